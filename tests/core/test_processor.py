"""The X-Ray span processor's nesting: children wait for parents, late ones go alone, bounded."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from support.xray_schema import validate_document
from tracekit.xray.processor import XRaySpanProcessor

TRACE = 0x5759E988BD862E3FE1BE46A994272793
ROOT = 0x1


class ListSink:
    """Keeps documents, and the thread that sent each."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.threads: set[int] = set()

    def submit(self, document: bytes) -> bool:
        doc = json.loads(document)
        validate_document(doc)
        self.docs.append(doc)
        self.threads.add(threading.get_ident())
        return True

    def submit_many(self, documents: list[bytes]) -> int:
        return sum(self.submit(document) for document in documents)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        return None

    buffered_bytes = queued = 0


def span(span_id: int, parent: int | None, remote: bool = False) -> ReadableSpan:
    parent_ctx = None if parent is None else SpanContext(
        TRACE, parent, remote, TraceFlags(TraceFlags.SAMPLED))
    return ReadableSpan(
        name=f"s{span_id}",
        context=SpanContext(TRACE, span_id, False, TraceFlags(TraceFlags.SAMPLED)),
        parent=parent_ctx,
        resource=Resource.create({"service.name": "svc"}),
        kind=SpanKind.SERVER if parent is None else SpanKind.INTERNAL,
        start_time=1_700_000_000_000_000_000,
        end_time=1_700_000_000_100_000_000,
    )


def processor(**kw: Any) -> tuple[XRaySpanProcessor, ListSink]:
    transport = ListSink()
    return XRaySpanProcessor(transport, **kw), transport


def drain(proc: XRaySpanProcessor) -> None:
    proc._drain(final=False)


def test_children_nest_into_their_root_and_late_children_go_alone() -> None:
    proc, transport = processor()
    for item in (span(3, 2), span(2, ROOT), span(ROOT, None)):
        proc._queue.append(item)
    drain(proc)
    (root,) = transport.docs
    assert root["id"] == f"{ROOT:016x}"
    (child,) = root["subsegments"]
    assert child["id"] == f"{2:016x}" and child["subsegments"][0]["id"] == f"{3:016x}"
    proc._queue.append(span(4, 2))  # finishes after its parent was sent
    drain(proc)
    late = transport.docs[1]
    assert (late["type"], late["parent_id"], late["trace_id"]) == (
        "subsegment", f"{2:016x}", "1-5759e988-bd862e3fe1be46a994272793")


def test_children_of_a_parent_that_never_ends_expire_as_their_own_documents() -> None:
    proc, transport = processor(pending_seconds=0.0)
    proc._queue.append(span(5, 9))
    drain(proc)
    assert [(d["id"], d["parent_id"]) for d in transport.docs] == [(f"{5:016x}", f"{9:016x}")]
    assert not proc._waiting and not proc._arrivals and proc._waiting_count == 0


def test_waiting_bookkeeping_stays_bounded_under_a_long_running_parent() -> None:
    """Children of finished parents leave stale arrival entries; a long parent must not pin them."""
    proc, _ = processor(max_pending=50)
    proc._queue.append(span(7, ROOT))  # its parent is still running: the oldest entry stays
    for parent in range(100, 1100):
        proc._queue.append(span(parent + 5000, parent))
        proc._queue.append(span(parent, ROOT))
        drain(proc)
    assert len(proc._arrivals) <= 50
    assert proc._waiting_count <= 50


def test_force_flush_sends_on_the_calling_thread() -> None:
    proc, transport = processor()
    proc._queue.append(span(2, ROOT))
    assert proc.force_flush()
    assert transport.threads == {threading.get_ident()}
    assert transport.docs[0]["type"] == "subsegment"


def test_forked_child_does_not_resend_the_parents_spans() -> None:
    proc, transport = processor()
    proc._queue.append(span(2, ROOT))
    proc._queue.append(span(3, 9))
    drain(proc)  # span 3 waits for its parent
    proc._queue.append(span(4, ROOT))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        proc.force_flush()
        os.write(write, str(len(transport.docs)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"0"  # the parent process sends those three spans, not the child
    os.close(read)


def test_on_end_never_raises_into_the_instrumentation(monkeypatch: Any) -> None:
    """``on_end`` runs inside any library's ``span.end()``: a thread that cannot start is counted."""
    from tracekit._shared import stats as _stats

    _stats.reset()
    proc, transport = processor()

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    child = span(2, ROOT)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    proc.on_end(child)
    assert _stats.stats()["errors.xray.worker_start"] == 1
    monkeypatch.undo()
    proc.on_end(span(ROOT, None))  # the next span starts the worker after all
    assert proc.force_flush() and len(transport.docs) == 1
    proc.shutdown()
