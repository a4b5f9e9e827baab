"""``tracekit.web.flask.instrument(app)``: one X-Ray segment per Flask request, named by route template.

Wraps ``app.wsgi_app`` with :class:`tracekit.web.wsgi.TraceMiddleware`. The matched rule
(``/orders/<id>``) is read when the response starts, from the request Werkzeug keeps in the environ
until Flask pops its context; an unhandled exception (and its rule, in case it propagates) comes
from the ``got_request_exception`` signal, which fires only on errors. No per-request hook: a
teardown function costs every request a few µs in Flask's dispatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import got_request_exception, request

from tracekit._shared import stats
from tracekit.web import server
from tracekit.web.wsgi import EXCEPTION_KEY, Environ, TraceMiddleware

ROUTE_KEY = "tracekit.route"
_EXTENSION = "tracekit"


def instrument(
    app: Any,
    *,
    excluded_urls: str | Sequence[str] | None = None,
    capture_headers: Sequence[str] = (),
    record_metrics: bool = True,
) -> Any:
    """Trace every request of the Flask ``app`` (once: a later call with other options warns);
    returns ``app``.

    ``excluded_urls``: regular expressions searched in the full URL (default: the
    ``OTEL_PYTHON_FLASK_EXCLUDED_URLS`` / ``OTEL_PYTHON_EXCLUDED_URLS`` variables, else health-check
    paths). ``capture_headers``: request headers to record (sensitive ones are refused).
    ``record_metrics``: feed ``tracekit.metrics.record_request`` (a no-op until metrics are set up).
    """
    options = server.instrument_options(excluded_urls, capture_headers, record_metrics)
    if _EXTENSION in app.extensions:
        server.warn_if_reinstrumented("flask", app.extensions[_EXTENSION], options)
        return app
    app.wsgi_app = TraceMiddleware(
        app.wsgi_app,
        excluded_urls=excluded_urls,
        capture_headers=capture_headers,
        record_metrics=record_metrics,
        route_of=_route_of,
        framework="flask",
    )
    got_request_exception.connect(_remember, app, weak=False)
    app.extensions[_EXTENSION] = options
    return app


def _route_of(environ: Environ) -> str | None:
    """The rule Flask matched: noted on error, else from the request object still in ``environ``."""
    route = environ.get(ROUTE_KEY)
    if route is None:
        route = getattr(getattr(environ.get("werkzeug.request"), "url_rule", None), "rule", None)
    return route if isinstance(route, str) else None


def _remember(sender: Any, exception: BaseException | None = None, **extra: Any) -> None:
    """``got_request_exception``: Flask is about to render ``exception`` as a 500 (or re-raise it,
    after which its request object is gone)."""
    try:
        environ, rule = request.environ, request.url_rule
        if rule is not None:
            environ[ROUTE_KEY] = rule.rule
        if exception is not None:
            environ[EXCEPTION_KEY] = exception
    except Exception as err:
        stats.report("flask.exception", err)
