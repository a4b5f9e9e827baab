"""The readable trace tree (demo, ``tracekit traces show``) on documents from the wild."""

from __future__ import annotations

from tracekit.xray.tree import render


def doc(name: str, id_: str, parent: str | None = None, start: float = 1.0) -> dict[str, object]:
    node: dict[str, object] = {"name": name, "id": id_, "start_time": start, "end_time": start + 1}
    if parent:
        node["parent_id"] = parent
    return node


def test_nesting_and_order() -> None:
    docs = [doc("root", "a" * 16), doc("late", "c" * 16, "a" * 16, 3.0),
            doc("early", "b" * 16, "a" * 16, 2.0)]
    assert [line.split(" [")[0] for line in render(docs).splitlines()] == [
        "root", "  early", "  late"]


def test_self_parent_and_parent_loops_render_each_node_once() -> None:
    docs = [doc("self", "a" * 16, "a" * 16), doc("x", "b" * 16, "c" * 16),
            doc("y", "c" * 16, "b" * 16), doc("ok", "d" * 16)]
    names = sorted(line.strip().split(" [")[0] for line in render(docs).splitlines())
    assert names == ["ok", "self", "x", "y"]
