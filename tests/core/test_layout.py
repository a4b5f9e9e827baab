"""The package's structure: no import cycles, and dependencies that only point down the layers.

Every import in src/tracekit counts, at module level or inside a function (a lazy import is still
a dependency); imports under ``if TYPE_CHECKING:`` do not run and are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "tracekit"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _imports(child))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _imports(node)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name in MODULES)
        return
    assert not node.level, f"{module}: tracekit uses absolute imports only"
    base = node.module or ""
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:
            yield f"{base}.{alias.name}"
        elif base in MODULES:
            yield base


GRAPH = {
    name: {
        target
        for node in _imports(ast.parse(path.read_text()))
        for target in _targets(name, node)
        if target != name
    }
    for name, path in MODULES.items()
}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_inside_tracekit() -> None:
    assert _cycles() == []


def test_the_cycle_check_sees_a_cycle() -> None:
    GRAPH["tracekit.xray.ids"].add("tracekit.tracing.api")
    try:
        assert any("tracekit.tracing.api" in c and "tracekit.xray.ids" in c for c in _cycles())
    finally:
        GRAPH["tracekit.xray.ids"].discard("tracekit.tracing.api")


LOWER_LAYERS = {
    "tracekit._shared": ("tracekit._shared",),
    "tracekit.xray": ("tracekit._shared", "tracekit.xray"),
    "tracekit.sampling": ("tracekit._shared", "tracekit.xray", "tracekit.sampling", "tracekit.cli"),
    "tracekit.tracing": ("tracekit._shared", "tracekit.xray", "tracekit.sampling", "tracekit.tracing"),
    "tracekit.logs": ("tracekit._shared", "tracekit.xray", "tracekit.tracing", "tracekit.logs"),
    "tracekit.metrics": ("tracekit._shared", "tracekit.xray", "tracekit.tracing", "tracekit.metrics"),
}
"""What each core package may import: the core never depends on the integrations (web, Lambda)
or on the tools built on it (sidecar, CLI)."""


@pytest.mark.parametrize("package", sorted(LOWER_LAYERS))
def test_core_packages_depend_only_on_lower_layers(package: str) -> None:
    allowed = LOWER_LAYERS[package]
    wrong = {
        (module, target)
        for module, targets in GRAPH.items()
        if module == package or module.startswith(package + ".")
        for target in targets
        if not any(target == a or target.startswith(a + ".") for a in allowed)
    }
    assert wrong == set()
