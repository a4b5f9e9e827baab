"""``tracekit.web.fastapi.instrument(app)``: one X-Ray segment per FastAPI (or Starlette) request.

The tracing middleware goes *outside* Starlette's ``ServerErrorMiddleware``, so a handler's
unhandled exception is seen both as the 500 response the client gets (with ``X-Amzn-Trace-Id``)
and as the exception itself (the segment's fault cause). Works for plain Starlette apps too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tracekit.web import server
from tracekit.web.asgi import ASGIApp, TraceMiddleware

_MARK = "_tracekit_instrumented"
"""Attribute set on an instrumented app: the options it was instrumented with."""


def instrument(
    app: Any,
    *,
    excluded_urls: str | Sequence[str] | None = None,
    capture_headers: Sequence[str] = (),
    record_metrics: bool = True,
) -> Any:
    """Trace every HTTP request and WebSocket of ``app`` (once: a later call with other options
    warns); returns ``app``.

    ``excluded_urls``: regular expressions searched in the full URL (default: the
    ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` / ``OTEL_PYTHON_EXCLUDED_URLS`` variables, else
    health-check paths). ``capture_headers``: request headers to record (sensitive ones refused).
    ``record_metrics``: feed ``tracekit.metrics.record_request`` (a no-op until metrics are set up).
    """
    options = server.instrument_options(excluded_urls, capture_headers, record_metrics)
    kept = getattr(app, _MARK, None)
    if kept is not None:
        server.warn_if_reinstrumented("fastapi", kept, options)
        return app
    build = app.build_middleware_stack
    middleware = TraceMiddleware(  # built now so that bad options fail here, not on a request
        app.router,
        excluded_urls=excluded_urls,
        capture_headers=capture_headers,
        record_metrics=record_metrics,
        framework="fastapi",
    )

    def build_traced_stack() -> ASGIApp:
        middleware.app = build()
        return middleware

    app.build_middleware_stack = build_traced_stack
    _no_native_server_span(app)
    app.middleware_stack = None  # rebuilt with tracing on the next request
    setattr(app, _MARK, options)
    return app


def _no_native_server_span(app: Any) -> None:
    """FastAPI >= 0.16x starts its own OpenTelemetry server span once a tracer provider is set;
    with tracekit's span that would be two segments per request, so it is turned off for ``app``."""
    telemetry = getattr(app, "_telemetry", None)
    if isinstance(telemetry, dict):
        telemetry["tracing"] = False
