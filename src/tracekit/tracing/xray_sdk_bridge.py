"""The X-Ray SDK bridge: ``aws_xray_sdk``'s recorder records into tracekit's spans.

The seam is the recorder's own: a ``Context`` (where the SDK keeps its open segments and
subsegments) and an ``Emitter`` (what sends them), which ``xray_recorder`` lets one replace. Here
every segment or subsegment the SDK opens starts an OpenTelemetry span, a child of whatever span is
current (tracekit's or the SDK's), and takes that span's ids; closing it ends the span, carrying
what the SDK recorded on it (annotations, metadata, ``http``, ``aws``, ``sql``, ``cause``, flags) in
one attribute that ``xray/segments.py`` merges into the document. Inside a tracekit span the SDK
sees that span as its current entity, so ``xray_recorder.current_subsegment().put_annotation()``
lands on it. tracekit samples and sends; the SDK's emitter and sampler are left unused.
"""

from __future__ import annotations

import contextvars
import json
import os
import threading
import weakref
from typing import Any

from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.async_recorder import AsyncAWSXRayRecorder
from aws_xray_sdk.core.context import Context
from aws_xray_sdk.core.models.dummy_entities import DummySegment
from aws_xray_sdk.core.models.segment import Segment
from aws_xray_sdk.core.models.subsegment import Subsegment
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from tracekit._shared import stats
from tracekit._shared.redaction import redact
from tracekit._shared.settings import VERSION
from tracekit.xray import ids
from tracekit.xray.segments import SDK_ENTITY_ATTR

FIELDS = ("name", "namespace", "http", "aws", "sql", "annotations", "metadata", "cause", "error",
          "fault", "throttle", "user", "origin")
"""What the SDK records on an entity that the X-Ray document keeps (ids and times are the span's)."""
MAX_OPEN = 10_000
"""Open SDK entities tracked at once; beyond it new ones are not traced (counted)."""

_ended: contextvars.ContextVar[Any] = contextvars.ContextVar("tracekit_xray_sdk_ended", default=None)
"""The segment ``end_segment`` just closed: the recorder asks for it once more before it sends."""


def _once(key: str, message: str) -> None:
    stats.incr(f"xray_sdk.{key}")
    stats.warn_once_per_interval(f"xray_sdk.{key}", "tracekit X-Ray SDK bridge: %s", message)


class SpanBackedContext(Context):  # type: ignore[misc]
    """The SDK's entity storage, kept in OpenTelemetry's context instead of a thread-local stack."""

    def __init__(self, context_missing: str = "LOG_ERROR") -> None:
        super().__init__(context_missing)
        self._open: dict[int, tuple[Any, trace.Span, object]] = {}
        """span id -> (SDK entity, its span, the context token to detach)."""
        self._views: weakref.WeakKeyDictionary[trace.Span, Any] = weakref.WeakKeyDictionary()
        self._roots: dict[int, weakref.ref[trace.Span]] = {}
        self._lock = threading.Lock()
        self._tracer = trace.get_tracer("tracekit.xray_sdk", VERSION)
        """The global provider's: tracekit's once it is configured."""

    # -- what the recorder calls -------------------------------------------------------------

    def put_segment(self, segment: Any) -> None:
        _ended.set(None)
        parent = None
        if getattr(segment, "parent_id", None):  # begun from an inbound trace header
            parent = _remote_parent(segment.trace_id, segment.parent_id, segment.sampled)
        current = trace.get_current_span().get_span_context()
        kind = SpanKind.INTERNAL if current.is_valid and parent is None else SpanKind.SERVER
        self._open_span(segment, kind, parent)

    def put_subsegment(self, subsegment: Any) -> None:
        entity = self.get_trace_entity()
        if not entity:
            _once("discarded", f"no open segment or span: subsegment {subsegment.name!r} not traced")
            return
        subsegment.parent_id = entity.id
        subsegment.parent_segment.increment()  # the SDK's count of open children (close decrements)
        remote = subsegment.namespace in ("aws", "remote")
        self._open_span(subsegment, SpanKind.CLIENT if remote else SpanKind.INTERNAL, None)

    def end_subsegment(self, end_time: float | None = None) -> bool:
        entry = self._current_open()
        if entry is None or getattr(entry[0], "type", None) != "subsegment":
            _once("unbalanced", "end_subsegment() with no subsegment of the X-Ray SDK open; ignored")
            return False
        entry[0].close(end_time)
        self._close_span(entry)
        return True

    def end_segment(self, end_time: float | None = None) -> None:
        entry = self._current_open()
        if entry is not None and getattr(entry[0], "type", None) == "subsegment":
            segment = entry[0].parent_segment
            entry = self._open.get(ids.from_span_id(segment.id) or 0)
        if entry is None:
            _once("unbalanced", "end_segment() with no segment of the X-Ray SDK open; ignored")
            return
        entry[0].close(end_time)
        self._close_span(entry)
        _ended.set(entry[0])

    def get_trace_entity(self) -> Any:
        span = trace.get_current_span()
        span_context = span.get_span_context()
        if span_context.is_valid:
            entry = self._open.get(span_context.span_id)
            return entry[0] if entry is not None else self._view(span)
        ended = _ended.get()
        if ended is not None:
            return ended
        if not global_sdk_config.sdk_enabled():
            return DummySegment()
        return self.handle_context_missing()

    def set_trace_entity(self, trace_entity: Any) -> None:
        _once("set_trace_entity", "set_trace_entity() is not supported: the current span is the "
                                  "current entity (pass context with tracekit/OpenTelemetry instead)")

    def clear_trace_entities(self) -> None:
        _ended.set(None)

    # -- spans ---------------------------------------------------------------------------------

    def _open_span(self, entity: Any, kind: SpanKind, parent: otel_context.Context | None) -> None:
        span: trace.Span = _unsampled()
        try:
            tracer = self._tracer
            if tracer is not None and entity.sampled and len(self._open) < MAX_OPEN:
                span = tracer.start_span(entity.name, context=parent, kind=kind)
            elif tracer is not None and entity.sampled:
                stats.incr("xray_sdk.dropped.too_many_open")
        except Exception as exc:
            stats.report("xray_sdk.start", exc)
        span_context = span.get_span_context()
        if span_context.is_valid:
            entity.id = ids.to_span_id(span_context.span_id)
            if getattr(entity, "type", None) != "subsegment":
                entity.trace_id = ids.to_xray_trace_id(span_context.trace_id)
        entity.sampled = span.is_recording() and entity.sampled
        token = otel_context.attach(trace.set_span_in_context(span))
        if span_context.is_valid:
            with self._lock:
                self._open[span_context.span_id] = (entity, span, token)

    def _close_span(self, entry: tuple[Any, trace.Span, object]) -> None:
        entity, span, token = entry
        with self._lock:
            self._open.pop(span.get_span_context().span_id, None)
        try:
            if span.is_recording():
                record(span, entity, own=True)
            otel_context.detach(token)  # type: ignore[arg-type]
            end = getattr(entity, "end_time", None)
            span.end(int(end * 1e9) if end else None)
        except Exception as exc:
            stats.report("xray_sdk.end", exc)

    def _current_open(self) -> tuple[Any, trace.Span, object] | None:
        return self._open.get(trace.get_current_span().get_span_context().span_id)

    # -- a tracekit span seen as an SDK entity -----------------------------------------------

    def _view(self, span: trace.Span) -> Any:
        with self._lock:
            view = self._views.get(span)
            if view is None:
                view = self._views[span] = self._make_view(span)
            return view

    def _make_view(self, span: trace.Span) -> Any:
        span_context = span.get_span_context()
        if _is_local_root(span):
            if len(self._roots) >= MAX_OPEN:
                self._roots.clear()
            self._roots[span_context.trace_id] = weakref.ref(span)
            return SpanSegment(span)
        root_ref = self._roots.get(span_context.trace_id)
        root = root_ref() if root_ref is not None else None
        if root is None:
            _once("segment_view", "current_segment() inside a nested span whose segment the bridge "
                                  "has not seen: it refers to the current span")
            root = span
        return SpanSubsegment(span, self._views.get(root) or self._views.setdefault(root, SpanSegment(root)))


def _unsampled() -> trace.Span:
    """A span that records nothing but has ids, so the SDK's unsampled entities still nest."""
    trace_id, span_id = (int.from_bytes(os.urandom(n), "big") or 1 for n in (16, 8))
    return NonRecordingSpan(SpanContext(trace_id, span_id, False, TraceFlags(TraceFlags.DEFAULT)))


def _is_local_root(span: trace.Span) -> bool:
    parent = getattr(span, "parent", None)
    kind = getattr(span, "kind", None)
    return kind is SpanKind.SERVER or parent is None or bool(parent.is_remote)


def _remote_parent(trace_id: str, parent_id: str, sampled: object) -> otel_context.Context | None:
    root, parent = ids.from_xray_trace_id(trace_id), ids.from_span_id(parent_id)
    if root is None or parent is None:
        return None
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    remote = NonRecordingSpan(SpanContext(root, parent, True, flags))
    return trace.set_span_in_context(remote, otel_context.Context())


def record(span: trace.Span, entity: Any, *, own: bool) -> None:
    """Put what the SDK recorded on ``entity`` onto ``span`` (one JSON attribute; errors -> status)."""
    data = entity.to_dict()
    fields = {key: data[key] for key in FIELDS if key in data and (own or key not in ("name", "namespace"))}
    if "metadata" in fields:
        fields["metadata"] = redact(fields["metadata"])
    span.set_attribute(SDK_ENTITY_ATTR, json.dumps(fields, default=str))
    if fields.get("fault") or fields.get("error"):
        span.set_status(StatusCode.ERROR)


class _SpanView:
    """An SDK entity standing for a span tracekit (or OpenTelemetry) opened: what SDK code records
    on it goes to the span at once, since nothing closes it through the SDK."""

    _span_ref: weakref.ref[trace.Span]

    def _bind(self, span: trace.Span) -> None:
        self._span_ref = weakref.ref(span)
        span_context = span.get_span_context()
        self.id = ids.to_span_id(span_context.span_id)
        self.sampled = span.is_recording()

    def _sync(self) -> None:
        span = self._span_ref()
        if span is not None and span.is_recording():
            record(span, self, own=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = super().to_dict()  # type: ignore[misc]
        data.pop("_span_ref", None)
        return data


_MUTATORS = ("put_annotation", "put_metadata", "put_http_meta", "apply_status_code", "add_exception",
             "set_aws", "set_user", "set_sql", "add_error_flag", "add_fault_flag", "add_throttle_flag")


def _synced(name: str) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = getattr(super(_SpanView, self), name)(*args, **kwargs)
        try:
            self._sync()
        except Exception as exc:
            stats.report("xray_sdk.record", exc)
        return result

    method.__name__ = name
    return method


for _name in _MUTATORS:
    setattr(_SpanView, _name, _synced(_name))


class SpanSegment(_SpanView, Segment):  # type: ignore[misc]
    """A span that is an X-Ray segment (server span or local root), seen by SDK code."""

    def __init__(self, span: trace.Span) -> None:
        Segment.__init__(self, getattr(span, "name", None) or "segment",
                         traceid=ids.to_xray_trace_id(span.get_span_context().trace_id))
        self._bind(span)


class SpanSubsegment(_SpanView, Subsegment):  # type: ignore[misc]
    """A nested span, seen by SDK code as a subsegment of ``segment``."""

    def __init__(self, span: trace.Span, segment: Any) -> None:
        Subsegment.__init__(self, getattr(span, "name", None) or "subsegment", "local", segment)
        self._bind(span)


class NullEmitter:
    """In place of the SDK's UDP emitter: tracekit's exporters send the spans, once."""

    def send_entity(self, entity: Any) -> None:
        stats.incr("xray_sdk.entities")

    def set_daemon_address(self, address: str | None) -> None:
        return None


_TRACEKIT_OWNS = {
    "emitter": "emitter= is ignored: tracekit sends (TRACEKIT_EXPORTERS, AWS_XRAY_DAEMON_ADDRESS)",
    "context": "context= is ignored: the bridge keeps the SDK's entities in tracekit's spans",
    "sampler": "sampler= is ignored: tracekit's sampler decides (OTEL_TRACES_SAMPLER, sampling rules)",
    "sampling_rules": "sampling_rules= is ignored: give them to tracekit (TRACEKIT_SAMPLING_RULES)",
    "daemon_address": "daemon_address= is ignored: tracekit reads AWS_XRAY_DAEMON_ADDRESS",
}


class BridgedRecorder(AsyncAWSXRayRecorder):  # type: ignore[misc]
    """``xray_recorder`` once bridged: the same object (patchers hold it), this class instead.

    ``xray_recorder`` is the SDK's async recorder, so ``capture_async``, ``in_segment_async`` and
    ``in_subsegment_async`` stay: they open and close entities through the same context, and as that
    context lives in OpenTelemetry's (``contextvars``), each asyncio task keeps its own parent."""

    @property
    def sampling(self) -> bool:
        return False  # the SDK's sampler is never asked: tracekit's sampler decides per span

    @sampling.setter
    def sampling(self, value: bool) -> None:
        if value:
            _once("configure.sampling", "sampling=True: tracekit's sampler decides (OTEL_TRACES_SAMPLER)")

    def configure(self, *args: Any, **kwargs: Any) -> None:
        for key, message in _TRACEKIT_OWNS.items():
            if kwargs.pop(key, None) is not None:
                _once(f"configure.{key}", message)
        super().configure(*args, **kwargs)


_lock = threading.Lock()
_saved: dict[str, Any] = {}


def install() -> bool:
    """Bridge ``aws_xray_sdk.core.xray_recorder`` into tracekit (idempotent)."""
    with _lock:
        recorder = xray_recorder
        if isinstance(recorder, BridgedRecorder):
            return True
        _saved.update(cls=type(recorder), context=recorder._context, emitter=recorder._emitter,
                      sampling=recorder._sampling)
        missing = getattr(recorder._context, "context_missing", "LOG_ERROR")
        recorder.__class__ = BridgedRecorder
        recorder._context = SpanBackedContext(missing)
        recorder._emitter = NullEmitter()
        stats.incr("xray_sdk.installed")
        return True


def uninstall() -> None:
    """Give the recorder back its own class, context and emitter (tests, or to stop bridging)."""
    with _lock:
        if not _saved:
            return
        recorder = xray_recorder
        recorder.__class__ = _saved["cls"]
        recorder._context, recorder._emitter = _saved["context"], _saved["emitter"]
        recorder._sampling = _saved["sampling"]
        _saved.clear()


def installed() -> bool:
    return isinstance(xray_recorder, BridgedRecorder)
