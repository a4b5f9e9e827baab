"""An ASGI middleware (Starlette, FastAPI, any ASGI 3 app) tracing HTTP requests and WebSockets.

    app = TraceMiddleware(app)

HTTP: one server span from the request until the application returns, so streamed bodies are
covered and counted. WebSocket: one span for the whole connection, status 101 once accepted (403 if
closed before). The route template comes from the matched Starlette/FastAPI route after the
application ran; without one the span is named after the method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from tracekit._shared import stats
from tracekit.tracing import current
from tracekit.web import server

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADER = server.RESPONSE_HEADER.lower().encode()
_MAX_ROUTES = 1024


class TraceMiddleware:
    """Wrap ``app``; options as for :func:`tracekit.web.fastapi.instrument`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded_urls: str | Sequence[str] | None = None,
        capture_headers: Sequence[str] = (),
        record_metrics: bool = True,
        framework: str = "asgi",
    ) -> None:
        self.app = app
        self.tracing = server.ServerTracing(
            framework, excluded_urls, capture_headers, record_metrics
        )
        self._routes: dict[object, str | None] = {}
        self._wanted = frozenset(n.encode() for n in (*self.tracing.header_names, "host"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        request = self._start(scope) if kind in ("http", "websocket") else None
        if request is None:
            await self.app(scope, receive, send)
            return
        websocket = kind == "websocket"

        async def traced_send(message: Message) -> None:
            try:
                message = _on_send(request, message, websocket)
            except Exception as exc:
                stats.report("asgi.response", exc)
            await send(message)

        token = current.attach(request.context)
        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            request.fail(exc)
            raise
        finally:
            current.detach(token)
            self.tracing.finish(request, self._route(scope))

    def _start(self, scope: Scope) -> server.Request | None:
        try:
            headers: dict[str, str] = {}
            wanted = self._wanted
            for key, value in scope.get("headers") or ():
                if key in wanted:  # ASGI header names are lower case
                    name, text = key.decode("latin-1"), value.decode("latin-1")
                    headers[name] = f"{headers[name]},{text}" if name in headers else text
            scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
            host = headers.get("host") or _server(scope)
            raw = scope.get("raw_path")
            path = (
                raw.decode("latin-1") if raw else scope.get("root_path", "") + scope.get("path", "")
            )
            query = scope.get("query_string", b"").decode("latin-1")
            url = server.full_url(scheme, host, path, query)
            method = scope.get("method") or "GET"
            client = scope.get("client")
            peer = client[0] if client else None
            return self.tracing.start(method, url, path, host, headers.get, peer)
        except Exception as exc:
            stats.report("asgi.start", exc)
            return None

    def _route(self, scope: Scope) -> str | None:
        """FastAPI leaves the matched route in ``scope["route"]``; Starlette leaves the endpoint."""
        try:
            route = scope.get("route")
            path = getattr(route, "path", None)
            if isinstance(path, str):
                return path
            endpoint = scope.get("endpoint")
            if endpoint is None:
                return None
            if endpoint not in self._routes and len(self._routes) < _MAX_ROUTES:
                self._routes[endpoint] = _starlette_path(scope.get("router"), endpoint)
            return self._routes.get(endpoint)
        except Exception as exc:
            stats.report("asgi.route", exc)
            return None


def _on_send(request: server.Request, message: Message, websocket: bool) -> Message:
    kind = message.get("type")
    if kind == "http.response.body":
        request.size = (request.size or 0) + len(message.get("body", b""))
    elif kind == "http.response.start":
        request.status = int(message.get("status", 0))
        if request.header:
            headers = [*(message.get("headers") or ()), (_HEADER, request.header.encode())]
            message = {**message, "headers": headers}
    elif websocket and kind == "websocket.accept":
        request.status = 101
    elif websocket and kind in ("websocket.close", "websocket.http.response.start"):
        request.status = request.status or int(message.get("status", 403))
    return message


def _server(scope: Scope) -> str:
    server = scope.get("server")
    if not server:
        return "localhost"
    host, port = server[0], server[1]
    return host if port in (None, 80, 443) else f"{host}:{port}"


def _starlette_path(router: object, endpoint: object) -> str | None:
    for route in getattr(router, "routes", ()):
        if getattr(route, "endpoint", None) is endpoint:
            path = getattr(route, "path", None)
            return path if isinstance(path, str) else None
    return None
