"""The public API: decorators on every kind of function, parents across threads and tasks."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import tracekit
from support.xray_schema import validate_document
from tracekit._shared import stats as _stats
from tracekit.xray.tree import flatten


def flush_documents(daemon: Any, count: int = 1) -> list[dict[str, Any]]:
    assert tracekit.force_flush()
    docs: list[dict[str, Any]] = daemon.wait_for(count, timeout=5)
    for doc in docs:
        validate_document(doc)
    return docs


def test_sync_function_span_with_annotations_and_metadata(traced: Any) -> None:
    @tracekit.trace(name="load", annotations={"tier": "db"})
    def load(x: int) -> int:
        tracekit.annotate("user id", 42)
        tracekit.add_metadata("query", {"sql": "select 1", "password": "hunter2"}, namespace="db")
        return x * 2

    assert load(21) == 42
    (doc,) = flush_documents(traced)
    assert doc["name"] == "core-test"
    assert doc["annotations"] == {"tier": "db", "user_id": 42}
    assert doc["metadata"]["db"] == {"query": {"sql": "select 1", "password": "[REDACTED]"}}


def test_parents_across_thread_pool_and_gather(traced: Any) -> None:
    @tracekit.trace
    def work(i: int) -> int:
        return i

    @tracekit.trace
    async def task(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @tracekit.trace
    def root() -> None:
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(work, range(4))) == [0, 1, 2, 3]

        async def fan_out() -> list[int]:
            return await asyncio.gather(*(task(i) for i in range(3)))

        assert asyncio.run(fan_out()) == [0, 1, 2]

    root()
    (doc,) = flush_documents(traced)
    names = sorted(sub["name"] for sub in doc["subsegments"])
    assert names == ["task"] * 3 + ["work"] * 4
    assert all("subsegments" not in sub for sub in doc["subsegments"])


def test_generator_and_async_generator_spans_cover_iteration(traced: Any) -> None:
    @tracekit.trace
    def numbers(n: int) -> Any:
        for i in range(n):
            with tracekit.span(f"item-{i}"):
                pass
            yield i
        return "done"

    @tracekit.trace
    async def anumbers(n: int) -> Any:
        for i in range(n):
            tracekit.annotate("last", i)
            yield i

    @tracekit.trace(name="consumer")
    def consume() -> None:
        assert list(numbers(3)) == [0, 1, 2]

        async def collect() -> list[int]:
            return [i async for i in anumbers(2)]

        assert asyncio.run(collect()) == [0, 1]

    consume()
    (doc,) = flush_documents(traced)
    nodes = {node["id"]: node for node in flatten([doc])}
    gen = next(n for n in nodes.values() if n["name"] == "numbers")
    assert sorted(n["name"] for n in nodes.values() if n.get("parent_id") == gen["id"]) == [
        "item-0", "item-1", "item-2"
    ]
    agen = next(n for n in nodes.values() if n["name"] == "anumbers")
    assert agen["annotations"] == {"last": 1}


def test_generator_passes_values_and_thrown_exceptions(traced: Any) -> None:
    @tracekit.trace
    def echo() -> Any:
        received = []
        while True:
            try:
                value = yield len(received)
            except KeyError:
                received.append("thrown")
                continue
            if value is None:
                return received
            received.append(value)

    gen = echo()
    assert next(gen) == 0
    assert gen.send("a") == 1
    assert gen.throw(KeyError("k")) == 2
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value == ["a", "thrown"]


def test_user_exceptions_pass_through_unchanged_and_become_cause(traced: Any) -> None:
    class Boom(Exception):
        pass

    @tracekit.trace
    def fails() -> None:
        raise Boom("no luck")

    @tracekit.trace
    async def afails() -> None:
        raise Boom("async no luck")

    with pytest.raises(Boom, match="no luck") as info:
        fails()
    assert info.type is Boom
    with pytest.raises(Boom):
        asyncio.run(afails())
    docs = flush_documents(traced, 2)
    for doc in docs:
        assert doc["fault"] is True
        (exc,) = doc["cause"]["exceptions"]
        assert exc["type"].endswith("Boom") and "no luck" in exc["message"]
        assert exc["stack"][0]["path"].endswith("test_api.py")
        assert exc["stack"][0]["label"] in ("fails", "afails")


def test_record_exception_and_current_ids(traced: Any) -> None:
    seen: dict[str, Any] = {}

    @tracekit.trace
    def handler() -> None:
        seen["id"] = tracekit.current_trace_id()
        seen["header"] = tracekit.current_trace_header()
        try:
            raise ValueError("handled")
        except ValueError as exc:
            tracekit.record_exception(exc)

    handler()
    (doc,) = flush_documents(traced)
    assert seen["id"] == doc["trace_id"]
    assert seen["header"] == f"Root={doc['trace_id']};Parent={doc['id']};Sampled=1"
    assert doc["cause"]["exceptions"][0]["message"] == "handled"


def test_calls_outside_a_trace_are_quiet_no_ops(traced: Any, caplog: Any) -> None:
    tracekit.annotate("k", "v")
    tracekit.add_metadata("k", "v")
    tracekit.record_exception(ValueError("x"))
    assert tracekit.current_trace_id() is None
    assert tracekit.current_trace_header() is None
    assert _stats.stats()["context_missing"] == 3
    assert not caplog.records


def test_context_missing_log_mode_logs_once(xray_daemon: Any, caplog: Any) -> None:
    _stats.reset()
    tracekit.configure(exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       context_missing="LOG_ERROR")
    try:
        tracekit.annotate("k", "v")
        tracekit.annotate("k", "v")
    finally:
        tracekit.shutdown()
    assert [r.getMessage() for r in caplog.records] == [
        "tracekit.annotate called outside any trace; ignored"
    ]


def test_invalid_and_huge_annotations_never_raise(traced: Any) -> None:
    @tracekit.trace
    def handler() -> str:
        tracekit.annotate("bad-key!*", "ok")
        tracekit.annotate("obj", {"not": "scalar"})  # type: ignore[arg-type]
        tracekit.annotate("long", "x" * 100_000)
        tracekit.annotate("nan", float("nan"))
        for i in range(80):
            tracekit.annotate(f"k{i}", i)
        tracekit.add_metadata("weird", object())
        tracekit.add_metadata("x", 1, namespace="AWS.reserved")
        return "fine"

    assert handler() == "fine"
    (doc,) = flush_documents(traced)
    annotations = doc["annotations"]
    assert annotations["bad_key__"] == "ok"
    assert len(annotations["long"]) == 1000
    assert len(annotations) <= 50
    assert "obj" not in annotations and "nan" not in annotations
    assert doc["metadata"]["default"]["obj"] == "{'not': 'scalar'}"
    assert doc["metadata"]["default"]["weird"].startswith("<object object")
    json.dumps(doc)
    counts = _stats.stats()
    assert counts["annotations.rejected"] >= 30
    assert counts["errors.add_metadata"] == 1


def test_span_context_manager_yields_otel_span(traced: Any) -> None:
    with tracekit.span("outer", attributes={"db.system": "sqlite", "api_token": "t"}) as outer:
        outer.set_attribute("rows", 3)
        with tracekit.span("inner"):
            pass
    (doc,) = flush_documents(traced)
    assert doc["name"] == "core-test"
    assert doc["metadata"]["default"] == {"db.system": "sqlite", "api_token": "[REDACTED]", "rows": 3}
    assert [s["name"] for s in doc["subsegments"]] == ["inner"]


def test_a_full_span_still_updates_its_existing_annotations(traced: Any) -> None:
    @tracekit.trace
    def handler() -> None:
        for i in range(50):
            tracekit.annotate(f"k{i}", i)
        tracekit.annotate("k0", "updated")

    handler()
    (doc,) = flush_documents(traced)
    assert doc["annotations"]["k0"] == "updated" and len(doc["annotations"]) == 50
    assert "k0" not in doc.get("metadata", {}).get("default", {})


def test_cleanup_of_a_closed_generator_runs_inside_its_span(traced: Any) -> None:
    @tracekit.trace
    def rows() -> Any:
        try:
            yield 1
            yield 2
        finally:
            with tracekit.span("cleanup"):
                pass

    @tracekit.trace
    async def arows() -> Any:
        try:
            yield 1
            yield 2
        finally:
            with tracekit.span("acleanup"):
                pass

    @tracekit.trace(name="consumer")
    def consume() -> None:
        gen = rows()
        assert next(gen) == 1
        gen.close()

        async def first() -> None:
            agen = arows()
            assert await agen.__anext__() == 1
            await agen.aclose()

        asyncio.run(first())

    consume()
    (doc,) = flush_documents(traced)
    nodes = {node["name"]: node for node in flatten([doc])}
    assert nodes["cleanup"]["parent_id"] == nodes["rows"]["id"]
    assert nodes["acleanup"]["parent_id"] == nodes["arows"]["id"]
