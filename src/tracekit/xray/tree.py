"""Render the segment documents of one trace as a readable tree (for ``tracekit traces show``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Document = dict[str, Any]


def flatten(documents: Iterable[Document]) -> list[Document]:
    """Every segment and subsegment as its own node, with ``parent_id`` filled from nesting."""
    nodes: list[Document] = []

    def walk(doc: Document, parent_id: str | None) -> None:
        node = {k: v for k, v in doc.items() if k != "subsegments"}
        if parent_id:
            node.setdefault("parent_id", parent_id)
            node.setdefault("type", "subsegment")
        nodes.append(node)
        subsegments = doc.get("subsegments")
        for sub in subsegments if isinstance(subsegments, list) else ():
            if isinstance(sub, dict):  # documents from the wild: anything else is not a node
                walk(sub, doc.get("id"))

    for doc in documents:
        walk(doc, None)
    return nodes


def roots(nodes: list[Document]) -> list[Document]:
    """The nodes whose parent is not among ``nodes`` (all of them if parents form a loop)."""
    ids = {n.get("id") for n in nodes}
    return [n for n in nodes if n.get("parent_id") not in ids] or nodes


def walk(documents: Iterable[Document]) -> list[tuple[int, Document]]:
    """Every node once with its depth, depth-first: roots and children by start time."""
    nodes = flatten(documents)
    ids = {n.get("id") for n in nodes}
    children: dict[str | None, list[Document]] = {}
    for node in nodes:
        parent = node.get("parent_id")
        children.setdefault(parent if parent in ids else None, []).append(node)
    out: list[tuple[int, Document]] = []
    shown: set[int] = set()

    def emit(node: Document, depth: int) -> None:
        if id(node) in shown:  # documents from the wild may name themselves or loop as parents
            return
        shown.add(id(node))
        out.append((depth, node))
        for child in sorted(children.get(node.get("id"), []), key=_start):
            emit(child, depth + 1)

    for root in sorted(children.get(None, []), key=_start):
        emit(root, 0)
    for node in nodes:  # a parent loop has no root: show its members at the top level
        emit(node, 0)
    return out


def render(documents: Iterable[Document], show_ids: bool = False) -> str:
    """An indented tree: name, duration, status marks, annotations (``show_ids``: and each node's id);
    children by start time."""
    nodes = walk(documents)
    origin = min((_start(n) for _, n in nodes), default=0.0)
    return "\n".join(
        "  " * depth + _line(node, origin) + (f"  id={node.get('id')}" if show_ids else "")
        for depth, node in nodes
    )


def seconds(value: Any) -> float | None:
    """An epoch-seconds field as a float, or None when missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _start(node: Document) -> float:
    return seconds(node.get("start_time")) or 0.0


def _line(node: Document, origin: float) -> str:
    start = _start(node)
    end = node.get("end_time")
    duration = f"{(float(end) - start) * 1000:8.2f} ms" if end is not None else " (in progress)"
    offset = f"+{(start - origin) * 1000:.1f}ms"
    kind = "subsegment" if node.get("type") == "subsegment" else "segment"
    marks = [m for m in ("fault", "error", "throttle") if node.get(m)]
    text = f"{node.get('name', '?')} [{kind}] {duration} {offset}"
    status = node.get("http", {}).get("response", {}).get("status")
    if status is not None:
        text += f" http {status}"
    if marks:
        text += " !" + ",".join(marks)
    if node.get("annotations"):
        text += " " + " ".join(f"{k}={v}" for k, v in node["annotations"].items())
    for exc in node.get("cause", {}).get("exceptions", []) if isinstance(node.get("cause"), dict) else []:
        text += f"  <{exc.get('type')}: {exc.get('message')}>"
    return text
