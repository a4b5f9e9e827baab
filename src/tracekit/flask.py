"""``tracekit.flask.instrument(app)``: one X-Ray segment per Flask request, named by route template.

Wraps ``app.wsgi_app`` with :class:`tracekit.wsgi.TraceMiddleware` and adds one teardown hook that
hands the matched rule (``/orders/<id>``) and any exception Flask rendered as a 500 to the span.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import request

from tracekit import _stats
from tracekit.wsgi import EXCEPTION_KEY, Environ, TraceMiddleware

ROUTE_KEY = "tracekit.route"
_EXTENSION = "tracekit"


def instrument(
    app: Any,
    *,
    excluded_urls: str | Sequence[str] | None = None,
    capture_headers: Sequence[str] = (),
    record_metrics: bool = True,
) -> Any:
    """Trace every request of the Flask ``app`` (idempotent); returns ``app``.

    ``excluded_urls``: regular expressions searched in the full URL (default: the
    ``OTEL_PYTHON_FLASK_EXCLUDED_URLS`` / ``OTEL_PYTHON_EXCLUDED_URLS`` variables, else health-check
    paths). ``capture_headers``: request headers to record (sensitive ones are refused).
    ``record_metrics``: feed ``tracekit.metrics.record_request`` (a no-op until metrics are set up).
    """
    if _EXTENSION in app.extensions:
        return app
    app.wsgi_app = TraceMiddleware(
        app.wsgi_app,
        excluded_urls=excluded_urls,
        capture_headers=capture_headers,
        record_metrics=record_metrics,
        route_of=_route_of,
        framework="flask",
    )
    app.teardown_request(_remember)
    app.extensions[_EXTENSION] = app.wsgi_app
    return app


def _route_of(environ: Environ) -> str | None:
    route = environ.get(ROUTE_KEY)
    return route if isinstance(route, str) else None


def _remember(exc: BaseException | None) -> None:
    """Teardown hook: the request context still knows the matched rule and the unhandled error."""
    try:
        environ, rule = request.environ, request.url_rule
        if rule is not None:
            environ[ROUTE_KEY] = rule.rule
        if exc is not None:
            environ[EXCEPTION_KEY] = exc
    except Exception as err:
        _stats.report("flask.teardown", err)
