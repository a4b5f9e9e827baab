"""A lean OpenTelemetry tracer for the common case: X-Ray output and nothing else.

The SDK's span does work X-Ray output never reads (a lock per span, bounded mappings with their own
locks, span-limit objects, internal metrics, a multi-processor fan-out). These classes implement the
OpenTelemetry API (``Span``/``Tracer``/``TracerProvider``), so every instrumentation joins the trace,
and expose the read interface of the SDK's ``ReadableSpan`` that the X-Ray translator uses, so one
translator serves both paths. Ids, sampling (any SDK-shaped ``Sampler``), attribute validation and
limits, exception events and status rules are the SDK's, so documents and headers are the same.
:func:`tracekit.tracing.provider.configure` picks this path when nothing needs the SDK.
"""

from __future__ import annotations

import enum
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple, Protocol

from opentelemetry import trace
from opentelemetry.attributes import _clean_attribute_value
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util._decorator import _agnosticcontextmanager
from opentelemetry.util.types import Attributes, AttributeValue

from tracekit._shared import stats
from tracekit.tracing import current

LIMIT = 128
"""The SDK's default count limit for attributes, events and links (OTEL_*_COUNT_LIMIT)."""

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)


class Decision(enum.Enum):
    """The SDK's sampling decisions (same names and meaning), for samplers on the lean path."""

    DROP = 0
    RECORD_ONLY = 1
    RECORD_AND_SAMPLE = 2

    def is_recording(self) -> bool:
        return self is not Decision.DROP

    def is_sampled(self) -> bool:
        return self is Decision.RECORD_AND_SAMPLE


class SamplingResult(NamedTuple):
    """The SDK's ``SamplingResult`` fields."""

    decision: Decision
    attributes: Attributes = None
    trace_state: TraceState | None = None


class _AlwaysOn:
    """The SDK's ``ALWAYS_ON`` (what Lambda uses without a decision from the runtime)."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)

    def get_description(self) -> str:
        return "AlwaysOnSampler"


ALWAYS_ON = _AlwaysOn()


class Resource(NamedTuple):
    """The resource's attributes, as the translator reads them from the SDK's ``Resource``."""

    attributes: Mapping[str, AttributeValue]
    schema_url: str = ""


class LeanProcessor(Protocol):
    """What a lean provider calls: the ``SpanProcessor`` methods tracekit's processors have."""

    def on_start(self, span: Any, parent_context: Context | None = None) -> None: ...

    def on_end(self, span: Any) -> None: ...

    def force_flush(self, timeout_millis: int = 30000) -> bool: ...

    def shutdown(self) -> None: ...


class Scope(NamedTuple):
    """The instrumentation scope a tracer was asked for (the SDK's ``InstrumentationScope`` fields)."""

    name: str
    version: str | None = None
    schema_url: str | None = None
    attributes: Attributes = None


class Event(NamedTuple):
    """A span event as the SDK's ``Event`` is read: name, attributes, timestamp (ns)."""

    name: str
    attributes: Mapping[str, AttributeValue]
    timestamp: int


def _cleaned(attributes: Attributes, into: dict[str, AttributeValue] | None = None) -> dict[str, Any]:
    """Validated attributes, as the SDK keeps them: invalid keys dropped, sequences made tuples,
    at most :data:`LIMIT` keys (the oldest go first)."""
    out: dict[str, Any] = {} if into is None else into
    if not attributes:
        return out
    if (  # the common case, checked in C: new, non-empty string keys, plain values, room for all
        _PLAIN_TYPES.issuperset(map(type, attributes.values()))
        and _STR_TYPE.issuperset(map(type, attributes))
        and "" not in attributes
        and len(out) + len(attributes) <= LIMIT
        and out.keys().isdisjoint(attributes)
    ):
        out.update(attributes)
        return out
    for key, value in attributes.items():
        _set(out, key, value)
    return out


_PLAIN = (str, bool, int, float)
_PLAIN_TYPES = frozenset(_PLAIN)
_STR_TYPE = frozenset((str,))


def _set(attributes: dict[str, Any], key: str, value: Any) -> None:
    """The SDK's ``BoundedAttributes`` rules (the API's value cleaning), without its lock."""
    if not key or not isinstance(key, str):
        return
    if type(value) not in _PLAIN:
        value = _clean_attribute_value(value, None)
    if key in attributes:
        del attributes[key]
    elif len(attributes) >= LIMIT:
        del attributes[next(iter(attributes))]
    attributes[key] = value


def _kept_links(links: Sequence[Link]) -> list[Link]:
    return [link for link in links if link and _linkable(link.context, link.attributes)][:LIMIT]


def _linkable(context: SpanContext | None, attributes: Attributes) -> bool:
    """The SDK keeps a link to a valid span, or to an invalid one that carries something."""
    return bool(context and (context.is_valid or attributes or context.trace_state))


class LeanSpan(trace.Span):
    """A recording span: the API's writes, the SDK ``ReadableSpan``'s reads, processors on end."""

    __slots__ = (
        "_attributes",
        "_context",
        "_events",
        "_links",
        "_name",
        "_processors",
        "_record_exception",
        "_set_status_on_exception",
        "_status",
        "end_time",
        "instrumentation_scope",
        "kind",
        "parent",
        "resource",
        "start_time",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        tracer: LeanTracer,
        attributes: dict[str, Any],
        links: Sequence[Link],
        record_exception: bool,
        set_status_on_exception: bool,
    ) -> None:
        self._name = name
        self._context = context
        self.parent = parent
        self.kind = kind
        self.resource = tracer.resource
        self.instrumentation_scope = tracer.scope
        self._processors = tracer.processors
        self._attributes = attributes
        self._events: list[Event] = []
        self._links = _kept_links(links) if links else []
        self._status = _UNSET
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self.start_time: int = 0
        self.end_time: int | None = None

    # -- the ReadableSpan read interface (what xray.segments and the processors read) --
    @property
    def name(self) -> str:
        return self._name

    @property
    def context(self) -> SpanContext:
        return self._context

    @property
    def attributes(self) -> Mapping[str, AttributeValue]:
        return MappingProxyType(self._attributes)

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(self._events)

    @property
    def links(self) -> tuple[Link, ...]:
        return tuple(self._links)

    @property
    def status(self) -> Status:
        return self._status

    # -- the API --
    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if self.end_time is None:
            _cleaned(attributes, self._attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self.end_time is None:
            _set(self._attributes, key, value)

    def add_event(self, name: str, attributes: Attributes = None, timestamp: int | None = None) -> None:
        if self.end_time is None and len(self._events) < LIMIT:
            self._events.append(Event(name, _cleaned(attributes), timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        if self.end_time is None and _linkable(context, attributes) and len(self._links) < LIMIT:
            self._links.append(Link(context, _cleaned(attributes)))

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """The SDK's rules: OK is final, UNSET is ignored; a ``Status`` carries its own description."""
        if self.end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """An ``exception`` event with the attributes the SDK gives it (the translator's ``cause``)."""
        module, qualname = type(exception).__module__, type(exception).__qualname__
        event: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """Idempotent; hands the finished span to every processor, which never raise into the caller."""
        if self.end_time is not None:
            return
        self.end_time = end_time or time.time_ns()
        for processor in self._processors:
            try:
                processor.on_end(self)
            except Exception as exc:
                stats.report("span_processor", exc)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self.end_time is None:
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    def __repr__(self) -> str:
        return f"LeanSpan(name={self._name!r}, span_id=0x{self._context.span_id:016x})"


class LeanTracer(trace.Tracer):
    """Starts :class:`LeanSpan` s: parent from the context, X-Ray ids, the provider's sampler."""

    def __init__(self, provider: LeanTracerProvider, scope: Scope) -> None:
        self.scope = scope
        self.resource = provider.resource
        self.processors = provider.processors
        self._provider = provider

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        provider = self._provider
        if context is None:  # resolved once here rather than by every reader below
            context = current.get_current()
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
        else:
            parent = None
            trace_id = provider.id_generator.generate_trace_id()
        result = provider.sampler.should_sample(context, trace_id, name, kind, attributes, links)
        sampled = result.decision.is_sampled()
        span_context = SpanContext(
            trace_id,
            provider.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED if sampled else _NOT_SAMPLED,
            trace_state=result.trace_state,
        )
        if not result.decision.is_recording():
            return trace.NonRecordingSpan(span_context)
        span = LeanSpan(
            name, span_context, parent, kind, self, _cleaned(result.attributes), links or (),
            record_exception, set_status_on_exception,
        )  # fmt: skip
        span.start_time = start_time or time.time_ns()
        for processor in self.processors:
            try:
                processor.on_start(span, context)
            except Exception as exc:
                stats.report("span_processor", exc)
        return span

    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class LeanTracerProvider(trace.TracerProvider):
    """Holds the resource, sampler, id generator and span processors; hands out :class:`LeanTracer` s.

    ``sampler`` is anything with the SDK ``Sampler.should_sample`` signature whose result has
    ``decision.is_sampled()``/``is_recording()``, ``attributes`` and ``trace_state``.
    """

    def __init__(self, resource: Any, sampler: Any, id_generator: Any) -> None:
        self.resource = resource
        self.sampler = sampler
        self.id_generator = id_generator
        self.processors: list[LeanProcessor] = []
        self._lock = threading.Lock()

    def add_span_processor(self, processor: LeanProcessor) -> None:
        """Processors are called in the order added; tracers see processors added later too.

        They receive :class:`LeanSpan` s (the ``ReadableSpan`` read interface, not the SDK's class):
        an SDK processor or exporter goes to ``configure(span_processors=...)``, which picks the SDK."""
        with self._lock:
            self.processors.append(processor)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        scope = Scope(instrumenting_module_name or "", instrumenting_library_version, schema_url, attributes)
        return LeanTracer(self, scope)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        done = True
        for processor in list(self.processors):
            left = max(0, int((deadline - time.monotonic()) * 1000))
            done = bool(processor.force_flush(left)) and done
        return done

    def shutdown(self) -> None:
        for processor in list(self.processors):
            try:
                processor.shutdown()
            except Exception as exc:
                stats.report("shutdown", exc)


__all__ = [
    "ALWAYS_ON", "Decision", "Event", "LeanSpan", "LeanTracer", "LeanTracerProvider", "Resource",
    "SamplingResult", "Scope",
]
