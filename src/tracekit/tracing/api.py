"""The public tracing API: ``@trace``, ``span``, ``annotate``, ``add_metadata`` and friends.

Every function here is safe to call anywhere: outside a trace it does nothing (or logs, with
``AWS_XRAY_CONTEXT_MISSING=LOG_ERROR``), and a failure inside tracekit is counted, never raised.
Exceptions from *user* code pass through unchanged.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast, overload

from opentelemetry import trace as otel_trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from tracekit._shared import stats
from tracekit._shared.redaction import REDACTED, is_sensitive, redact
from tracekit.tracing import current, propagation, provider
from tracekit.xray import ids
from tracekit.xray.segments import (
    ANNOTATIONS_ATTR,
    MAX_ANNOTATIONS,
    METADATA_PREFIX,
    sanitize_key,
)

F = TypeVar("F", bound=Callable[..., Any])
MAX_ANNOTATION_VALUE = 1000
"""Annotation strings are cut to this many characters (X-Ray indexes short values)."""


@overload
def trace(func: F, /) -> F: ...


@overload
def trace(
    *,
    name: str | None = None,
    annotations: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Callable[[F], F]: ...


def trace(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    annotations: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> F | Callable[[F], F]:
    """Trace every call of a function, coroutine, generator or async generator as one span.

    Use bare (``@trace``) or with options (``@trace(name="load", annotations={"tier": "db"})``).
    """

    def decorate(fn: F) -> F:
        qualname = getattr(fn, "__qualname__", None) or repr(fn)
        span_name = name or qualname.rsplit("<locals>.", 1)[-1]
        fixed = dict(annotations or {})
        if inspect.isasyncgenfunction(fn):
            wrapped = _wrap_async_gen(fn, span_name, fixed, kind)
        elif inspect.isgeneratorfunction(fn):
            wrapped = _wrap_gen(fn, span_name, fixed, kind)
        elif inspect.iscoroutinefunction(fn):
            wrapped = _wrap_coro(fn, span_name, fixed, kind)
        else:
            wrapped = _wrap_sync(fn, span_name, fixed, kind)
        return cast(F, wrapped)

    return decorate(func) if func is not None else decorate


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    annotations: Mapping[str, Any] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """``with tracekit.span("name") as s:`` a child span of the current one (an OTel ``Span``)."""
    current = _start(name, annotations or {}, kind)
    if attributes:
        _safe_set_attributes(current, attributes)
    token = _attach(current)
    try:
        yield current
    except BaseException as exc:
        _fail(current, exc)
        raise
    finally:
        _detach(token)
        _end(current)


def annotate(key: str, value: str | int | float | bool) -> None:
    """Add an indexed X-Ray annotation (also an OTel attribute) to the current span."""
    current = _current("annotate")
    if current is not None:
        _annotate(current, key, value)


def add_metadata(key: str, value: Any, namespace: str = "default") -> None:
    """Attach any JSON-able ``value`` to the current span as X-Ray metadata (not indexed)."""
    current = _current("add_metadata")
    if current is None:
        return
    try:
        if namespace.startswith("AWS."):
            raise ValueError(f"metadata namespace {namespace!r} is reserved (AWS.*)")
        attr = METADATA_PREFIX + namespace
        existing = getattr(current, "attributes", None) or {}
        merged = json.loads(existing.get(attr, "{}"))
        merged[key] = REDACTED if is_sensitive(key) else redact(value)
        current.set_attribute(attr, json.dumps(merged, default=repr))
    except Exception as exc:
        stats.report("add_metadata", exc)


def record_exception(exc: BaseException) -> None:
    """Record ``exc`` on the current span (X-Ray ``cause``) and mark the span as failed."""
    current = _current("record_exception")
    if current is not None:
        _fail(current, exc)


def instrument(*names: str) -> list[str]:
    """Trace calls made with these libraries: ``tracekit.instrument("botocore", "requests")``.

    No names, or ``"all"``: every instrumentation whose package and library are installed. Returns
    the names instrumented so far. An unknown name raises ``ConfigError``; a missing package logs one
    line. Configures tracekit with defaults first, as any tracekit call does.
    """
    from tracekit.tracing import instrument as outbound  # not on the cold path of a function

    selected = outbound.parse("tracekit.instrument", names or ("all",))
    provider.get_tracer()
    return outbound.enable(selected)


def current_trace_id() -> str | None:
    """The current trace id in X-Ray form (``1-5759e988-bd862e3fe1be46a994272793``), or None."""
    context = otel_trace.get_current_span().get_span_context()
    return ids.to_xray_trace_id(context.trace_id) if context.is_valid else None


def current_trace_header() -> str | None:
    """A ready ``X-Amzn-Trace-Id`` value for an outgoing call made from the current span."""
    context = otel_trace.get_current_span().get_span_context()
    return propagation.header_for(context) if context.is_valid else None


# -- span lifecycle, each step guarded ---------------------------------------------------------


def _start(name: str, annotations: Mapping[str, Any], kind: SpanKind) -> Span:
    try:
        tracer = provider.get_tracer()
        if tracer is None:
            return INVALID_SPAN
        new = tracer.start_span(name, kind=kind)
        for key, value in annotations.items():
            _annotate(new, key, value)
        return new
    except Exception as exc:
        stats.report("span_start", exc)
        return INVALID_SPAN


def _attach(span: Span) -> object:
    try:
        return current.attach(otel_trace.set_span_in_context(span))
    except Exception as exc:
        stats.report("context_attach", exc)
        return None


def _detach(token: object) -> None:
    if token is None:
        return
    try:
        current.detach(token)  # type: ignore[arg-type]
    except Exception as exc:
        stats.report("context_detach", exc)


def _end(current: Span) -> None:
    try:
        current.end()
    except Exception as exc:
        stats.report("span_end", exc)


def _fail(current: Span, exc: BaseException) -> None:
    try:
        if current.is_recording():
            current.record_exception(exc)
            current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:256]))
    except Exception as err:
        stats.report("record_exception", err)


def _current(operation: str) -> Span | None:
    current = otel_trace.get_current_span()
    if current.is_recording():
        return current
    if not current.get_span_context().is_valid:
        stats.incr("context_missing")
        if provider.current_config().context_missing == "log":
            stats.warn_once_per_interval(
                f"context_missing.{operation}",
                "tracekit.%s called outside any trace; ignored",
                operation,
            )
    return None


def _annotate(current: Span, key: str, value: Any) -> None:
    try:
        if not current.is_recording():
            return
        attrs = getattr(current, "attributes", None) or {}
        indexed = list(attrs.get(ANNOTATIONS_ATTR, ()))
        clean_key = sanitize_key(str(key)) or "_"
        if is_sensitive(clean_key):
            value = REDACTED
        full = len(indexed) >= MAX_ANNOTATIONS and clean_key not in indexed
        if not isinstance(value, (str, int, float, bool)) or full:
            stats.incr("annotations.rejected")
            stats.warn_once_per_interval(
                "annotate.rejected",
                "tracekit: annotation %r kept as metadata: values must be str, int, float or bool "
                "and a span holds at most %d annotations",
                key,
                MAX_ANNOTATIONS,
            )
            current.set_attribute(clean_key, repr(value)[:MAX_ANNOTATION_VALUE])
            return
        if isinstance(value, str) and len(value) > MAX_ANNOTATION_VALUE:
            value = value[:MAX_ANNOTATION_VALUE]
            stats.incr("annotations.truncated")
        current.set_attribute(clean_key, value)
        if clean_key not in indexed:
            current.set_attribute(ANNOTATIONS_ATTR, [*indexed, clean_key])
    except Exception as exc:
        stats.report("annotate", exc)


def _safe_set_attributes(current: Span, attributes: Mapping[str, Any]) -> None:
    try:
        for key, value in attributes.items():
            current.set_attribute(key, REDACTED if is_sensitive(key) else value)
    except Exception as exc:
        stats.report("set_attributes", exc)


# -- wrappers per function kind ----------------------------------------------------------------


def _wrap_sync(fn: Callable[..., Any], name: str, ann: dict[str, Any], kind: SpanKind) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with span(name, kind=kind, annotations=ann):
            return fn(*args, **kwargs)

    return wrapper


def _wrap_coro(fn: Callable[..., Any], name: str, ann: dict[str, Any], kind: SpanKind) -> Any:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        with span(name, kind=kind, annotations=ann):
            return await fn(*args, **kwargs)

    return wrapper


def _wrap_gen(fn: Callable[..., Any], name: str, ann: dict[str, Any], kind: SpanKind) -> Any:
    """The span covers the whole iteration; each step runs with the span as current."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        gen = fn(*args, **kwargs)
        current = _start(name, ann, kind)
        step: Callable[[Any], Any] = gen.send
        arg: Any = None
        try:
            while True:
                token = _attach(current)
                try:
                    item = step(arg)
                except StopIteration as stop:
                    return stop.value
                except BaseException as exc:
                    _fail(current, exc)
                    raise
                finally:
                    _detach(token)
                try:
                    arg, step = (yield item), gen.send
                except GeneratorExit:  # closed early: its finally blocks run in the span too
                    token = _attach(current)
                    try:
                        gen.close()
                    finally:
                        _detach(token)
                    raise
                except BaseException as exc:  # thrown in by the consumer: pass it on
                    arg, step = exc, gen.throw
        finally:
            _end(current)

    return wrapper


def _wrap_async_gen(fn: Callable[..., Any], name: str, ann: dict[str, Any], kind: SpanKind) -> Any:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        agen = fn(*args, **kwargs)
        current = _start(name, ann, kind)
        step: Callable[[Any], Any] = agen.asend
        arg: Any = None
        try:
            while True:
                token = _attach(current)
                try:
                    item = await step(arg)
                except StopAsyncIteration:
                    return
                except BaseException as exc:
                    _fail(current, exc)
                    raise
                finally:
                    _detach(token)
                try:
                    arg, step = (yield item), agen.asend
                except GeneratorExit:
                    token = _attach(current)
                    try:
                        await agen.aclose()
                    finally:
                        _detach(token)
                    raise
                except BaseException as exc:
                    arg, step = exc, agen.athrow
        finally:
            _end(current)

    return wrapper
