"""A WSGI middleware that traces each request as one server span (X-Ray segment).

    app.wsgi_app = TraceMiddleware(app.wsgi_app)          # any WSGI application

The span lasts until the response body is handed over (exhausted, its ``Content-Length`` sent, or
closed by the server), so streamed bodies are covered and their bytes counted. Frameworks tell the
route template through ``route_of(environ)`` (``tracekit.web.flask`` does), asked when the response
starts and, if still unknown, at the end; without it the span is named after the method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from tracekit._shared import stats
from tracekit.tracing import current
from tracekit.web import server

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
EXCEPTION_KEY = "tracekit.exception"
"""Environ key where a framework leaves an exception it handled (rendered as a 500) for the span."""


class TraceMiddleware:
    """Wrap ``app``; options as for :func:`tracekit.web.flask.instrument`."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        excluded_urls: str | Sequence[str] | None = None,
        capture_headers: Sequence[str] = (),
        record_metrics: bool = True,
        route_of: Callable[[Environ], str | None] | None = None,
        framework: str = "wsgi",
    ) -> None:
        self.app = app
        self.tracing = server.ServerTracing(
            framework, excluded_urls, capture_headers, record_metrics
        )
        self._route_of = route_of
        self._keys = {n: "HTTP_" + n.upper().replace("-", "_") for n in self.tracing.header_names}

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = self._start(environ)
        if request is None:
            return self.app(environ, start_response)
        exchange = _Exchange(self, request, environ, start_response)
        token = current.attach(request.context)
        try:
            exchange.inner = self.app(environ, exchange.start_response)
        except BaseException as exc:
            request.fail(exc)
            self._finish(request, environ)
            raise
        finally:
            current.detach(token)
        return exchange

    def _start(self, environ: Environ) -> server.Request | None:
        try:
            method = environ.get("REQUEST_METHOD", "GET")
            host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            scheme = environ.get("wsgi.url_scheme", "http")
            url = server.full_url(scheme, host, path, environ.get("QUERY_STRING", ""))
            headers = {name: environ[key] for name, key in self._keys.items() if key in environ}
            return self.tracing.start(method, url, path, host, headers.get, environ.get("REMOTE_ADDR"))
        except Exception as exc:
            stats.report("wsgi.start", exc)
            return None

    def _route(self, environ: Environ) -> str | None:
        try:
            return self._route_of(environ) if self._route_of is not None else None
        except Exception as exc:
            stats.report("wsgi.route", exc)
            return None

    def _finish(self, request: server.Request, environ: Environ) -> None:
        handled = environ.get(EXCEPTION_KEY)
        if isinstance(handled, BaseException):
            request.fail(handled)
        self.tracing.finish(request, request.route or self._route(environ))


def _response_started(request: server.Request, status: str, headers: list[tuple[str, str]]) -> None:
    try:
        request.status = server.status_code(status)
        for key, value in headers:
            if len(key) == 14 and key.lower() == "content-length":
                request.size = int(value)
    except Exception as exc:
        stats.report("wsgi.response", exc)


class _Exchange:
    """One traced request's response: the ``start_response`` the application calls, and the body
    it returns, passed through chunk by chunk with the request's span current.

    The span ends once the last byte is handed over: when the body is exhausted, or as its last
    chunk goes out when ``Content-Length`` says so. Servers also call ``close()``, the fallback for a
    body abandoned half-read; test clients often never do, and their spans must end anyway.
    """

    __slots__ = ("_closed", "_environ", "_finished", "_middleware", "_start_response", "inner", "request")

    def __init__(
        self, middleware: TraceMiddleware, request: server.Request, environ: Environ, start: StartResponse
    ) -> None:
        self._middleware, self.request, self._environ = middleware, request, environ
        self._start_response = start
        self.inner: Iterable[bytes] = ()
        self._closed = self._finished = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        request = self.request
        _response_started(request, status, headers)
        if request.route is None:  # the framework's request is still alive here
            request.route = self._middleware._route(self._environ)
        if request.header:
            headers = [*headers, (server.RESPONSE_HEADER, request.header)]
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        request, counted = self.request, self.request.size is None
        left = None if counted else request.size
        chunks = iter(self.inner)
        while True:
            token = current.attach(request.context)
            try:
                chunk = next(chunks)
            except StopIteration:
                self._end()
                return
            except BaseException as exc:
                request.fail(exc)
                raise
            finally:
                current.detach(token)
            if counted:
                request.size = (request.size or 0) + len(chunk)
            elif left is not None:
                left -= len(chunk)
                if left <= 0:
                    self._end()
            yield chunk

    def _end(self) -> None:
        if not self._finished:
            self._finished = True
            self._middleware._finish(self.request, self._environ)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self._end()
