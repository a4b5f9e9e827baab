"""Spec files as code (sampling rules, dashboards): YAML/JSON read with the line of every key, so
that each problem is reported as ``file:line: field: problem (accepted: ...)``.

PyYAML is imported only when a file is parsed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KeyPath = tuple[str | int, ...]
"""Where a value sits in a document: mapping keys and list indexes from the top."""
MAX_NODES = 100_000
"""YAML nodes walked per file: aliases can make a small file a huge tree ("billion laughs")."""


@dataclass(frozen=True)
class Problem:
    """One finding in a spec file, printed as ``file:line: field: problem (accepted: ...)``."""

    file: str
    line: int
    field: str
    problem: str
    accepted: str = ""

    def __str__(self) -> str:
        tail = f" (accepted: {self.accepted})" if self.accepted else ""
        return f"{self.file}:{self.line}: {self.field}: {self.problem}{tail}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field,
                "problem": self.problem, "accepted": self.accepted}


class SyntaxProblem(Exception):
    """A file that cannot be parsed at all (one problem, nothing read)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def files_in(item: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """A file as given, a directory as its files with one of ``suffixes`` (sorted)."""
    if item.is_dir():
        return sorted(p for p in item.iterdir() if p.suffix in suffixes and p.is_file())
    return [item]


def read(path: Path) -> tuple[Any, dict[KeyPath, int], list[Problem]]:
    """Read and parse one file; raise :class:`SyntaxProblem` when it cannot be read or parsed."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SyntaxProblem(Problem(file, 1, "(file)", f"cannot be read: {exc}",
                                    "UTF-8 YAML or JSON")) from exc
    return parse_text(text, file, json_syntax=path.suffix == ".json")


def parse_text(text: str, file: str, json_syntax: bool) -> tuple[Any, dict[KeyPath, int], list[Problem]]:
    """Values plus the line of every key/item; JSON values come from ``json`` for exact numbers."""
    import yaml

    value: Any = None
    if json_syntax:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SyntaxProblem(Problem(file, exc.lineno, "(syntax)", exc.msg, "JSON")) from exc
    try:
        loader = yaml.SafeLoader(text)
        try:
            walker = _Walker(loader, file)
            node = loader.get_single_node()
            composed = None if node is None else walker.walk(node, ())
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        if json_syntax:
            return value, {}, []
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise SyntaxProblem(Problem(file, line, "(syntax)", str(exc.problem), "YAML")) from exc
    except yaml.YAMLError as exc:
        raise SyntaxProblem(Problem(file, 1, "(syntax)", str(exc), "YAML")) from exc
    return (value if json_syntax else composed), walker.lines, walker.problems


@dataclass
class _Walker:
    """Builds the value of a YAML node tree and records the line of every key and item."""

    loader: Any
    file: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    budget: int = MAX_NODES

    def walk(self, node: Any, path: KeyPath) -> Any:
        import yaml

        self.budget -= 1
        if self.budget < 0:
            raise SyntaxProblem(Problem(self.file, node.start_mark.line + 1, "(document)",
                                        "too large once aliases are expanded",
                                        f"at most {MAX_NODES:,} YAML nodes"))
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(n, (*path, i)) for i, n in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: Any, path: KeyPath) -> dict[Any, Any]:
        import yaml

        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            # keys are field names; a non-scalar key is reported as unknown, never expanded
            key = (self.loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode)
                   else f"({key_node.id} key)")
            if key in out:
                self.problems.append(Problem(self.file, key_node.start_mark.line + 1, str(key),
                                             "duplicate key", "each key once per mapping"))
            out[key] = self.walk(value_node, (*path, key))
        return out


def at(file: str, lines: Mapping[KeyPath, int], path: KeyPath, fld: str, problem: str,
       accepted: str = "") -> Problem:
    """A problem located at the nearest recorded line of ``path`` or its parents."""
    while path and path not in lines:
        path = path[:-1]
    return Problem(file, lines.get(path, 1), fld, problem, accepted)
