"""``@tracekit.lambda_handler``: one span per invocation, under the segment Lambda writes.

Per invocation: the parent comes from ``_X_AMZN_TRACE_ID`` (the span becomes a subsegment of the
function's segment; ``Sampled=0`` records nothing), the trigger is recognised from the event, the
logs and metrics of the invocation carry its request id and cold-start flag, and everything is
flushed before the handler returns, because Lambda freezes the process right after. Exceptions from
the handler are recorded and re-raised unchanged; tracekit's own failures are counted, never raised.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tracekit._shared import hooks, stats
from tracekit.aws_lambda import events, runtime
from tracekit.tracing import api, propagation, provider
from tracekit.xray import ids

H = TypeVar("H", bound=Callable[..., Any])

DEFAULT_FLUSH_TIMEOUT = 2.0
"""Longest wait for exporters before returning (X-Ray over UDP is done at once; OTLP may wait)."""
FLUSH_MARGIN_MS = 200
"""Flushing stops this long before the invocation's deadline, so the flush never causes a timeout."""
UDP_FLUSH_TIMEOUT = 0.05
"""What X-Ray's UDP flush is given at least: its sends never wait, the SDK only needs a non-zero
deadline to call it."""

_MARKER = "__tracekit_lambda__"
_cold = [True]


def instrument(handler: H, *, name: str | None = None, flush_timeout: float | None = None) -> H:
    """Wrap a Lambda handler (``def`` or ``async def``); the result is a plain ``(event, context)``
    function the runtime can call. In Lambda, configures tracing with Lambda defaults unless the
    application did; elsewhere (unit tests of the handler) tracing configures as usual on first use."""
    if getattr(handler, _MARKER, False):
        return handler
    if runtime.in_lambda():
        runtime.ensure_configured()
    span_name = name or _qualified_name(handler)
    timeout = _flush_timeout() if flush_timeout is None else flush_timeout
    call = _run_async(handler) if inspect.iscoroutinefunction(handler) else handler

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        invocation = _begin(span_name, event, context)
        try:
            result = call(event, context)
        except BaseException as exc:
            _finish(invocation, context, timeout, exc=exc)
            raise
        _finish(invocation, context, timeout, result=result)
        return result

    setattr(wrapper, _MARKER, True)
    return cast(H, wrapper)


def lambda_handler(handler: H | None = None, /, **options: Any) -> Any:
    """Decorator form of :func:`instrument`: ``@lambda_handler`` or ``@lambda_handler(name=...)``."""
    if handler is None:
        return lambda fn: instrument(fn, **options)
    return instrument(handler, **options)


class _Invocation:
    """What :func:`_begin` set up, for :func:`_finish` to close."""

    def __init__(self, stack: ExitStack, span: Span, trigger: events.Trigger) -> None:
        self.stack, self.span, self.trigger = stack, span, trigger
        self.started = time.perf_counter()


def _begin(span_name: str, event: Any, context: Any) -> _Invocation | None:
    stack = ExitStack()
    try:
        cold = _take_cold_start()
        request_id = str(getattr(context, "aws_request_id", "") or "")
        trigger = _recognise(event)
        stack.callback(otel_context.detach, otel_context.attach(_parent_context()))
        _enter_logs(stack, context, request_id, cold)
        _enter_metrics(stack, context, request_id, cold)
        kind = SpanKind.CONSUMER if trigger.is_message else SpanKind.INTERNAL
        span = stack.enter_context(
            api.span(span_name, kind=kind, attributes=_span_attributes(context, request_id, cold, trigger))
        )
        api.annotate("ColdStart", cold)
        _add_links(span, trigger.trace_headers)
        return _Invocation(stack, span, trigger)
    except Exception as exc:
        stats.report("lambda.begin", exc)
        _close(stack, None)
        return None


def _finish(
    invocation: _Invocation | None,
    context: Any,
    timeout: float,
    *,
    result: Any = None,
    exc: BaseException | None = None,
) -> None:
    try:
        if invocation is not None:
            if invocation.trigger.is_http:
                status = 500 if exc is not None else _record_status(
                    invocation.span, invocation.trigger, result
                )
                _record_red(invocation, status)
            _close(invocation.stack, exc)
        budget = _flush_budget(context, timeout)
        _flush_traces(budget)
        _flush_metrics(budget)
    except Exception as err:
        stats.report("lambda.finish", err)


def _flush_traces(budget: float) -> None:
    """Send every span before returning. X-Ray's flush is synchronous and quick (UDP), so it runs
    even with no time left (given 0 ms the OTel SDK skips every processor: an invocation ending
    close to its timeout would lose its trace). The SDK's batch flush ignores its timeout and waits
    for the exporter, so other exporters flush on a helper thread, waited for at most ``budget``."""
    if set(provider.current_config().exporters) <= {"xray"}:
        provider.force_flush(max(budget, UDP_FLUSH_TIMEOUT))
        return
    done = threading.Event()

    def flush() -> None:
        provider.force_flush(budget)
        done.set()

    threading.Thread(target=flush, name="tracekit-lambda-flush", daemon=True).start()
    if not done.wait(budget):
        stats.incr("lambda.flush_timeouts")


def _close(stack: ExitStack, exc: BaseException | None) -> None:
    """Exit everything entered for the invocation; a handler exception ends the span as failed."""
    try:
        if exc is None:
            stack.close()
        else:
            stack.__exit__(type(exc), exc, exc.__traceback__)
    except Exception as err:
        if err is not exc:
            stats.report("lambda.close", err)


def _take_cold_start() -> bool:
    cold, _cold[0] = _cold[0], False
    return cold and not runtime.is_provisioned()


def _recognise(event: Any) -> events.Trigger:
    try:
        return events.recognise(event)
    except Exception as exc:
        stats.report("lambda.event_source", exc)
        return events.Trigger()


def _parent_context() -> otel_context.Context:
    """The context Lambda gives this invocation: its segment as the remote parent."""
    header = os.environ.get("_X_AMZN_TRACE_ID")
    carrier = {propagation.HEADER: header} if header else {}
    return propagation.XRayPropagator().extract(carrier, otel_context.Context())


def _span_attributes(context: Any, request_id: str, cold: bool, trigger: events.Trigger) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "faas.trigger": trigger.trigger,
        "faas.coldstart": cold,
        "faas.name": runtime.function_name(context=context),
        "aws.lambda.event_source": trigger.source,
        **trigger.attributes,
    }
    if request_id:
        attrs["faas.invocation_id"] = attrs["aws.request_id"] = request_id
    arn = runtime.function_arn(context)
    if arn:
        attrs["cloud.resource_id"] = arn
    version = runtime.function_version(context=context)
    if version:
        attrs["faas.version"] = version
    return attrs


def _add_links(span: Span, headers: list[str]) -> None:
    """Link to each message's producer span, so its trace is one click away."""
    from opentelemetry.trace import SpanContext, TraceFlags

    for value in headers:
        header = propagation.parse_header(value)
        if header is None or header.parent is None:
            stats.incr("lambda.links.unparseable")
            continue
        flags = TraceFlags(TraceFlags.SAMPLED if header.sampled else TraceFlags.DEFAULT)
        producer = SpanContext(header.root, header.parent, is_remote=True, trace_flags=flags)
        span.add_link(producer, {"aws.xray.trace_id": ids.to_xray_trace_id(header.root)})


def _record_red(invocation: _Invocation, status: int | None) -> None:
    """Request count, 4xx, 5xx and latency per route, as the web middleware records them."""
    metrics = hooks.metrics
    if metrics is None or status is None:
        return
    attrs = invocation.trigger.attributes
    metrics.record_request(
        str(attrs.get("http.route") or "UNKNOWN"),
        str(attrs.get("http.request.method") or "UNKNOWN"),
        status,
        (time.perf_counter() - invocation.started) * 1000,
    )


def _record_status(span: Span, trigger: events.Trigger, result: Any) -> int | None:
    """HTTP triggers: the returned ``statusCode`` makes the subsegment an error (4xx) or fault (5xx).

    Without one, payload format 2.0 answers 200; the others answer 500 (no status recorded then: the
    caller's own segment shows it).
    """
    status: Any = result.get("statusCode") if isinstance(result, dict) else None
    if status is None:
        status = trigger.default_status
    try:
        code = int(status)
    except (TypeError, ValueError):  # None, or not a number
        return None
    span.set_attribute("http.response.status_code", code)
    if code >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {code}"))
    return code


# -- logs and metrics, when the application uses them -------------------------------------------


def _enter_logs(stack: ExitStack, context: Any, request_id: str, cold: bool) -> None:
    """Logs written during the invocation carry the fields Powertools' Logger adds, same names."""
    logs = hooks.logs
    if logs is None:
        return
    fields = {
        "function_request_id": request_id,
        "cold_start": cold,
        "function_name": runtime.function_name(context=context),
        "function_arn": runtime.function_arn(context),
        "function_memory_size": getattr(context, "memory_limit_in_mb", None),
    }
    scope = logs.request_scope(**{k: v for k, v in fields.items() if v is not None})
    stack.enter_context(scope)


def _metrics() -> hooks.MetricHooks | None:
    """``tracekit.metrics`` if the application uses it or the environment names a namespace."""
    named = os.environ.get("AWS_EMF_NAMESPACE") or os.environ.get("POWERTOOLS_METRICS_NAMESPACE")
    if hooks.metrics is None and named:
        import tracekit.metrics  # noqa: F401  (registers its hooks)
    return hooks.metrics


def _enter_metrics(stack: ExitStack, context: Any, request_id: str, cold: bool) -> None:
    metrics = _metrics()
    if metrics is None:
        return
    properties = {"function_request_id": request_id} if request_id else None
    stack.enter_context(metrics.scope(properties=properties))
    if cold and metrics.is_configured():  # imported but not configured: nothing to record into
        from tracekit.metrics import names  # loaded with tracekit.metrics already

        dimensions = {names.FUNCTION: runtime.function_name(context=context)}
        metrics.add_count(names.COLD_START.name, 1, names.COLD_START.unit, dimensions=dimensions)


def _flush_metrics(timeout: float) -> None:
    if hooks.metrics is not None:
        hooks.metrics.flush(timeout)


# -- helpers ----------------------------------------------------------------------------------------


def _flush_budget(context: Any, timeout: float) -> float:
    """``timeout``, cut so that flushing ends before the invocation's deadline."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            left = (float(remaining()) - FLUSH_MARGIN_MS) / 1000
            return max(0.0, min(timeout, left))
        except (TypeError, ValueError):
            pass
    return timeout


def _flush_timeout() -> float:
    value = os.environ.get("TRACEKIT_LAMBDA_FLUSH_TIMEOUT", "")
    try:
        return float(value) if value else DEFAULT_FLUSH_TIMEOUT
    except ValueError:
        stats.report(
            "lambda.flush_timeout",
            msg=f"TRACEKIT_LAMBDA_FLUSH_TIMEOUT={value!r} is not valid: expected seconds, e.g. 2.0",
        )
        return DEFAULT_FLUSH_TIMEOUT


def _qualified_name(handler: Callable[..., Any]) -> str:
    module = getattr(handler, "__module__", None) or ""
    qualname = getattr(handler, "__qualname__", None) or getattr(handler, "__name__", "handler")
    return f"{module}.{qualname}" if module and module != "__main__" else str(qualname)


def _run_async(handler: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    """Run an ``async def`` handler to completion on the process's event loop.

    The loop outlives the invocation so that clients bound to it (aiohttp sessions, aioboto3) can be
    reused by the next one, as module-level clients are in synchronous handlers.
    """

    def run(event: Any, context: Any) -> Any:
        import asyncio

        if not _loop or _loop[0].is_closed():
            _loop[:] = [asyncio.new_event_loop()]
            asyncio.set_event_loop(_loop[0])
        return _loop[0].run_until_complete(handler(event, context))

    return run


_loop: list[Any] = []
"""The event loop async handlers run on (asyncio is imported only when one is used)."""


def _reset_cold_start() -> None:
    """For tests: the next invocation counts as a cold start again."""
    _cold[0] = True


__all__ = ["DEFAULT_FLUSH_TIMEOUT", "instrument", "lambda_handler"]
