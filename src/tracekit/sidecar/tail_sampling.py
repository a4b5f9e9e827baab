"""Tail sampling (``--tail-sampling``): decide deferred traces once they are complete.

A sink in front of the sidecar's own (X-Ray sender or local store). Applications that defer the
decision (``OTEL_TRACES_SAMPLER=xray_deferred``) mark their local root document; its trace is
buffered and decided when the marked root has ended and nothing of the trace arrived for ``idle``
seconds, or ``max_wait`` seconds after its first document. The "Error responses" tail policy keeps
error traces; the head rules, applied to the root's fields, decide the rest (sampling/README.md).

Everything else passes unchanged: a root segment without the mark is forwarded at once, with the
documents of its trace that came before it. Documents that are not a trace root (subsegments sent
on their own, segments of downstream services) may come before their root, so those of a trace
not seen yet wait, like a deferred trace, until their root shows which kind the trace is; without
one they are forwarded when the trace goes quiet. The buffer is bounded in bytes: a deferred
trace's document that does not fit is dropped (counted), a document of an unknown trace is
forwarded at once instead (counted).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tracekit._shared import stats
from tracekit._shared.settings import ConfigError
from tracekit.sampling.deferred import is_marked, unmark
from tracekit.sampling.matching import SamplingRequest
from tracekit.sampling.rules import RuleSet
from tracekit.sampling.sampler import XRaySampler
from tracekit.sampling.tail import TailDecider
from tracekit.xray.transports import SegmentSink

logger = logging.getLogger("tracekit.sidecar")
STATS = "sidecar.tail"
POLICY_ANNOTATION = "tracekit_tail_policy"
"""Annotation on the root of a trace kept by a tail policy (filter: annotation.tracekit_tail_policy)."""
MAX_DECIDED = 50_000
"""Decided trace ids remembered so that late documents follow their trace's decision."""
TRACE_OVERHEAD = 512
"""Bytes charged to the buffer per trace besides its documents (bookkeeping, the root's fields)."""
DOCUMENT_OVERHEAD = 100
"""Bytes a buffered document holds besides its own (bytes object header, tuple, list slot)."""


@dataclass(frozen=True)
class _Root:
    """What the decision needs from the marked local root (not the whole parsed document)."""

    id: object
    outer: bool
    """No parent: the trace's own root, which outranks a marked root further down."""
    ended: bool
    status: int | None
    fault: bool
    request: SamplingRequest

    @classmethod
    def of(cls, doc: dict[str, Any]) -> _Root:
        status = _field(_field(doc, "http"), "response").get("status")
        return cls(
            id=doc.get("id"), outer=not doc.get("parent_id"), ended=not doc.get("in_progress"),
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            fault=bool(doc.get("fault")), request=request_of(doc),
        )  # fmt: skip


@dataclass
class _Trace:
    """The buffered documents of one trace; ``root`` is the marked local root once it arrived."""

    first: float
    last: float
    docs: list[tuple[bytes, bool]] = field(default_factory=list)
    """(document, carries the mark) in arrival order."""
    size: int = TRACE_OVERHEAD
    root: _Root | None = None


class TailSampler:
    """A :class:`~tracekit.xray.transports.SegmentSink` that holds deferred traces until decided."""

    name = "tail"

    def __init__(
        self,
        inner: SegmentSink,
        rules: RuleSet,
        *,
        idle: float = 5.0,
        max_wait: float = 30.0,
        max_bytes: int = 16 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sweep_interval: float = 0.25,
    ) -> None:
        rng = rng or random.Random()
        self._inner = inner
        self._tail = TailDecider(rules.tail, clock=clock, rng=rng)
        self._head = XRaySampler("tracekit-sidecar", local_rules=rules, clock=clock, rng=rng,
                                 background=False)  # fmt: skip
        self._idle, self._max_wait, self._max_bytes = idle, max_wait, max_bytes
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._traces: dict[str, _Trace] = {}
        self._decided: OrderedDict[str, tuple[bool, str | None]] = OrderedDict()
        """trace id -> (kept, the tail policy that kept it), for documents after the decision."""
        self._bytes = 0
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- SegmentSink -------------------------------------------------------------------------------

    def submit(self, document: bytes) -> bool:
        try:
            doc = json.loads(document)
            trace_id = doc["trace_id"]
            if not isinstance(trace_id, str):
                raise TypeError("trace_id is not a string")
        except (ValueError, TypeError, KeyError):
            stats.incr(f"{STATS}.unparsed_forwarded")  # the upstream names what is wrong with it
            return self._inner.submit(document)
        with self._lock:
            out = self._take(trace_id, document, doc)
        return out is not None and self._forward(out)

    def submit_many(self, documents: list[bytes]) -> int:
        return sum(self.submit(document) for document in documents)

    def flush(self, timeout: float) -> bool:
        """Forward the traces that are due, then flush the inner sink (others are still awaited)."""
        self.sweep()
        return self._inner.flush(timeout)

    def close(self, timeout: float) -> None:
        """Decide every buffered trace now, forward what is kept, close the inner sink."""
        began = time.monotonic()
        self.stop()
        self.sweep(final=True)
        self._inner.close(max(0.0, timeout - (time.monotonic() - began)))

    @property
    def buffered_bytes(self) -> int:
        return self._bytes + self._inner.buffered_bytes

    @property
    def queued(self) -> int:
        return self._count + self._inner.queued

    # -- Service (the sweeper thread) ---------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tracekit-sidecar-tail", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self._sweep_interval):
            try:
                self.sweep()
            except Exception as exc:  # the sweeper must outlive any one trace
                stats.report(f"{STATS}.sweep", exc)

    # -- buffering ---------------------------------------------------------------------------------

    def _take(self, trace_id: str, raw: bytes, doc: dict[str, Any]) -> list[bytes] | None:
        """Buffer ``raw`` or return what to forward now; None when it is dropped (lock held)."""
        marked = is_marked(doc)
        verdict = self._decided.get(trace_id)
        if verdict is not None:
            stats.incr(f"{STATS}.documents_after_decision")
            keep, policy = verdict
            return [_forwardable(raw, policy) if marked else raw] if keep else []
        trace = self._traces.get(trace_id)
        rootless = trace is None or trace.root is None
        unknown = not marked and rootless
        if unknown and _is_trace_root(doc):
            stats.incr(f"{STATS}.decided.passthrough")
            return [*self._release(trace_id, keep=True), raw]
        cost = len(raw) + DOCUMENT_OVERHEAD + (TRACE_OVERHEAD if trace is None else 0)
        full = self._bytes + cost > self._max_bytes
        if unknown and full:
            stats.incr(f"{STATS}.overflow_forwarded")
            return [raw]
        if full:
            stats.incr(f"{STATS}.dropped.tail_buffer_full")
            if marked and rootless:  # undecidable without its root: drop what came before it
                self._release(trace_id, keep=False)
            return None
        now = self._clock()
        if trace is None:
            trace = self._traces[trace_id] = _Trace(now, now)
        trace.last = now
        trace.docs.append((raw, marked))
        trace.size += len(raw) + DOCUMENT_OVERHEAD
        self._bytes += cost
        self._count += 1
        if marked:  # the outermost marked root decides; a completed one replaces itself
            root = _Root.of(doc)
            if trace.root is None or root.outer or root.id == trace.root.id:
                trace.root = root
        return []

    def _release(self, trace_id: str, keep: bool, policy: str | None = None) -> list[bytes]:
        """Forget ``trace_id``'s buffer and remember the verdict; the documents if kept, with the
        mark removed (and the keeping ``policy`` annotated) on the marked root."""
        self._decided[trace_id] = (keep, policy)
        if len(self._decided) > MAX_DECIDED:
            self._decided.popitem(last=False)
        trace = self._traces.pop(trace_id, None)
        if trace is None:
            return []
        self._bytes -= trace.size
        self._count -= len(trace.docs)
        if not keep:
            stats.incr(f"{STATS}.documents_discarded", len(trace.docs))
            return []
        return [_forwardable(raw, policy) if marked else raw for raw, marked in trace.docs]

    # -- deciding ----------------------------------------------------------------------------------

    def sweep(self, final: bool = False) -> None:
        """Decide the traces that are due (all of them when ``final``) and forward the kept ones."""
        out: list[bytes] = []
        with self._lock:
            now = self._clock()
            due = [tid for tid, trace in self._traces.items() if final or self._due(trace, now)]
            for trace_id in due:
                out += self._finish_guarded(trace_id)
        self._forward(out)

    def _forward(self, payloads: list[bytes]) -> bool:
        """Hand documents to the inner sink; one it fails on is counted, the others still go."""
        ok = True
        for payload in payloads:
            try:
                ok = self._inner.submit(payload) and ok
            except Exception as exc:
                stats.incr(f"{STATS}.dropped.forward_error")
                stats.report(f"{STATS}.forward", exc)
                ok = False
        return ok

    def _finish_guarded(self, trace_id: str) -> list[bytes]:
        """A trace whose decision fails is forwarded undecided (counted), never stuck or lost."""
        try:
            return self._finish(trace_id)
        except Exception as exc:
            stats.report(f"{STATS}.decision", exc)
            return self._release(trace_id, keep=True)

    def _due(self, trace: _Trace, now: float) -> bool:
        if now - trace.first >= self._max_wait:
            return True
        ended = trace.root is None or trace.root.ended
        return ended and now - trace.last >= self._idle

    def _finish(self, trace_id: str) -> list[bytes]:
        trace = self._traces[trace_id]
        if trace.root is None:  # no mark arrived: not a deferred trace, not ours to decide
            stats.incr(f"{STATS}.decided.passthrough")
            return self._release(trace_id, keep=True)
        kept_by, policy = self._decide(trace.root)
        stats.incr(f"{STATS}.decided." + ("dropped" if kept_by is None else
                                            "kept_policy" if policy else "kept_rule"))  # fmt: skip
        if kept_by is None:
            return self._release(trace_id, keep=False)
        stats.incr(f"{STATS}.kept_by.{kept_by.replace('.', '_')}")
        return self._release(trace_id, keep=True, policy=kept_by if policy else None)

    def _decide(self, root: _Root) -> tuple[str | None, bool]:
        """(the tail policy or head rule that keeps the trace, or None; whether it is a policy)."""
        policy = self._tail.keep(root.status, fault=root.fault)
        if policy is not None:
            return policy, True
        rule, sampled = self._head.sample_request(root.request)
        return (rule if sampled else None), False


def request_of(root: dict[str, Any]) -> SamplingRequest:
    """What a head rule matches, read from a root segment document (name, origin, http.request)."""
    request = _field(_field(root, "http"), "request")
    url = request.get("url")
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:  # e.g. an unclosed IPv6 bracket: match as if the URL were unknown
        parts = None
    method = request.get("method")
    return SamplingRequest(
        service=_text(root.get("name")),
        service_type=_text(root.get("origin")),
        host=(parts.hostname if parts else None) or None,
        method=_text(method),
        path=(parts.path if parts else None) or None,
    )


def _field(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _is_trace_root(doc: dict[str, Any]) -> bool:
    return doc.get("type") != "subsegment" and not doc.get("parent_id")


def _forwardable(raw: bytes, policy: str | None = None) -> bytes:
    """A marked document without its mark, annotated with the tail policy that kept it."""
    doc = json.loads(raw)
    unmark(doc)
    if policy is not None:
        annotations = doc.get("annotations")
        if not isinstance(annotations, dict):
            annotations = doc["annotations"] = {}
        annotations[POLICY_ANNOTATION] = policy
    return json.dumps(doc, separators=(",", ":")).encode()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def from_settings(settings: Any, inner: SegmentSink) -> TailSampler:
    """The tail sampler for the sidecar's settings; rule-file problems become a ConfigError."""
    from tracekit.sampling import rules

    directory: Path = settings.sampling_dir
    if not directory.is_dir():
        raise ConfigError("--sampling-dir", str(directory), "a directory of rule files "
                          "(--tail-sampling reads its head rules and tail: policies)")  # fmt: skip
    try:
        ruleset = rules.load([directory])
    except rules.RuleFileError as exc:
        raise ConfigError("--sampling-dir", str(directory), f"valid rule files:\n{exc}") from None
    if not ruleset.tail:
        logger.warning("%s has no tail: policy; tail sampling applies the head rules only", directory)
    return TailSampler(
        inner, ruleset, idle=settings.tail_idle, max_wait=settings.tail_max_wait,
        max_bytes=settings.tail_buffer * 1024 * 1024,
    )  # fmt: skip
