"""Turn finished spans into X-Ray documents off the request thread, and send them.

``on_end`` only appends the span to a bounded queue. A background thread (or ``force_flush``, which
Lambda calls before returning) nests finished children into their local root's document — X-Ray's
usual form, one datagram per request — and sends it. Children that finish after their parent was
sent, or that wait too long, go as independent subsegment documents, sized to fit by
:mod:`tracekit.xray.documents`, to a :class:`~tracekit.xray.transports.SegmentSink`.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from opentelemetry.context import Context

from tracekit._shared import stats
from tracekit.xray.documents import split_document
from tracekit.xray.segments import Document, is_local_root, is_segment, to_document
from tracekit.xray.transports import SegmentSink

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, Span

_GATHER_SECONDS = 0.02
"""After a wake-up the worker lets spans gather this long: one thread switch per batch, not per
span, which under load is most of the worker's CPU. Documents leave at most this much later."""


_HELP_WAIT = 0.1
"""How long a caller that finds the queue full waits for the worker's drain before dropping."""


class XRaySpanProcessor:
    """An OTel span processor that emits sampled spans as X-Ray documents.

    It has the SDK ``SpanProcessor``'s methods without subclassing it: the lean span path
    (:mod:`tracekit.tracing.lean`) uses it without importing the SDK."""

    def __init__(
        self,
        transport: SegmentSink,
        *,
        max_queue: int = 2048,
        annotate_all: bool = False,
        sql_query: bool = False,
        max_pending: int = 4096,
        pending_seconds: float = 30.0,
    ) -> None:
        self._transport = transport
        self._max_queue = max_queue
        self._annotate_all = annotate_all
        self._sql_query = sql_query
        self._max_pending = max_pending
        self._pending_seconds = pending_seconds
        self._queue: deque[ReadableSpan] = deque()
        self._waiting: dict[int, list[ReadableSpan]] = {}
        """Finished spans by parent span id, until the parent finishes."""
        self._arrivals: deque[tuple[float, int]] = deque()
        self._waiting_count = 0
        self._sent: OrderedDict[int, None] = OrderedDict()
        self._outbox: list[bytes] = []
        """Documents of the drain under way (the lock is held)."""
        self._lock = threading.Lock()
        """Held while assembling documents (worker thread or ``force_flush``)."""
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def _on_ending(self, span: Span) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        """Queue ``span``. Runs inside ``span.end()`` of any instrumentation, so it never raises."""
        context = span.context
        if context is None or not context.trace_flags.sampled or self._stopped:
            return
        if len(self._queue) >= self._max_queue and not self._help(wait=_HELP_WAIT):
            stats.incr("spans.dropped.queue_full")
            return
        self._queue.append(span)
        try:
            if len(self._queue) >= self._max_queue // 2:
                self._help(wait=0.0)
            elif self._thread is None:
                self._start_thread()  # RuntimeError when the process is out of threads
            if not self._wake.is_set():
                self._wake.set()
        except Exception as exc:
            stats.report("xray.worker_start", exc)

    def _help(self, *, wait: float) -> bool:
        """The worker is behind (a CPU-bound request thread keeps the GIL from it): the caller
        sends the queue itself, as the X-Ray SDK always does, rather than let spans be dropped.
        With the queue full it waits up to ``wait`` seconds for the worker to finish a drain."""
        if not self._lock.acquire(timeout=wait):
            return False
        try:
            stats.incr("xray.caller_drains")
            self._drain_locked(final=False)
        finally:
            self._lock.release()
        return True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Send everything queued or waiting for a parent, now, on the calling thread."""
        try:
            self._drain(final=True)
            return self._transport.flush(timeout_millis / 1000)
        except Exception as exc:
            stats.report("xray.flush", exc)
            return False

    def shutdown(self) -> None:
        """Send what is left; give the transport at most 5 s (it counts what it could not send)."""
        self._stopped = True
        self._wake.set()
        try:
            self._drain(final=True)
            self._transport.close(5.0)
        except Exception as exc:
            stats.report("xray.close", exc)

    def _start_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="tracekit-xray", daemon=True)
                thread.start()
                self._thread = thread  # only once it runs: a failed start is retried next span

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(timeout=1.0)
            time.sleep(_GATHER_SECONDS)
            self._wake.clear()
            try:
                self._drain(final=False)
            except Exception as exc:
                stats.report("xray.worker", exc)

    def _drain(self, *, final: bool) -> None:
        with self._lock:
            self._drain_locked(final=final)

    def _drain_locked(self, *, final: bool) -> None:
        """Assemble what is queued, then hand the documents over together (one system call for
        many datagrams over UDP)."""
        while self._queue:
            self._assemble(self._queue.popleft())
        self._expire_pending(final)
        outbox, self._outbox = self._outbox, []
        if outbox:
            self._transport.submit_many(outbox)

    def _assemble(self, span: ReadableSpan) -> None:
        parent = span.parent
        if parent is None or is_local_root(span) or is_segment(span) or parent.span_id in self._sent:
            self._send(self._nest(span, standalone=True))
            return
        self._waiting.setdefault(parent.span_id, []).append(span)
        self._arrivals.append((time.monotonic(), parent.span_id))
        self._waiting_count += 1

    def _expire_pending(self, final: bool) -> None:
        """Send children whose parent is taking too long as documents of their own."""
        deadline = time.monotonic() - self._pending_seconds
        while self._arrivals:
            arrived, parent_id = self._arrivals[0]
            over = self._waiting_count > self._max_pending or len(self._arrivals) > self._max_pending
            if not (final or over or arrived < deadline or parent_id not in self._waiting):
                break
            self._arrivals.popleft()
            orphans = self._waiting.pop(parent_id, ())
            self._waiting_count -= len(orphans)
            for span in orphans:
                self._send(self._nest(span, standalone=True))

    def _nest(self, span: ReadableSpan, *, standalone: bool) -> Document:
        """``span``'s document with every waiting descendant nested inside it."""
        assert span.context is not None
        span_id = span.context.span_id
        doc = to_document(
            span, annotate_all=self._annotate_all, standalone=standalone, sql_query=self._sql_query
        )
        kids = self._waiting.pop(span_id, None)
        if kids:
            self._waiting_count -= len(kids)
            doc["subsegments"] = [self._nest(kid, standalone=False) for kid in kids]
        self._sent[span_id] = None
        if len(self._sent) > self._max_pending:
            self._sent.popitem(last=False)
        return doc

    def _send(self, doc: Document) -> None:
        self._outbox.extend(split_document(doc))


def _after_fork(ref: weakref.ref[XRaySpanProcessor]) -> None:
    processor = ref()
    if processor is not None:
        # The parent process sends what it had finished; sending it here too would duplicate it.
        processor._queue.clear()
        processor._outbox = []
        processor._waiting.clear()
        processor._arrivals.clear()
        processor._waiting_count = 0
        processor._thread = None
        processor._lock = threading.Lock()
        processor._start_lock = threading.Lock()
        processor._wake = threading.Event()


__all__ = ["XRaySpanProcessor"]
