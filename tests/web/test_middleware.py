"""The plain WSGI and ASGI middlewares, without a framework around them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from web_helpers import Traced
from werkzeug.test import Client

from tracekit.asgi import TraceMiddleware as AsgiMiddleware
from tracekit.wsgi import TraceMiddleware as WsgiMiddleware


def broken_stream(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first;"
    raise ConnectionError("backend went away")


def test_plain_wsgi_app_is_traced_and_named_after_the_method(traced: Traced) -> None:
    def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("201 Created", [("Content-Length", "5")])
        return [b"hello"]

    response = Client(WsgiMiddleware(hello)).post("/things?x=1", buffered=True)
    assert response.status_code == 201
    doc = traced.segment()
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={doc['trace_id']}"
    assert doc["http"]["request"]["method"] == "POST"
    assert doc["http"]["response"] == {"status": 201, "content_length": 5}
    assert [s.name for s in traced.server_spans()] == ["POST"]


def test_stream_failing_midway_is_a_fault_with_cause(traced: Traced) -> None:
    client = Client(WsgiMiddleware(broken_stream))
    with pytest.raises(ConnectionError):
        client.get("/feed", buffered=True)
    doc = traced.segment()
    assert doc["http"]["response"] == {"status": 200, "content_length": len(b"first;")}
    assert doc["fault"] is True
    assert doc["cause"]["exceptions"][0]["type"] == "ConnectionError"


def run_asgi(
    app: Any, scope: dict[str, Any], incoming: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_lifespan_and_unknown_scopes_pass_through_untouched(traced: Traced) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)
        await send(await receive())

    message = {"type": "lifespan.startup.complete"}
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    assert run_asgi(AsgiMiddleware(app), scope, [message]) == [message]
    assert seen == [scope]
    assert traced.exporter.get_finished_spans() == ()


def test_websocket_refused_before_accept_is_an_error(traced: Traced) -> None:
    async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1008})

    scope = {
        "type": "websocket",
        "scheme": "ws",
        "path": "/chat",
        "raw_path": b"/chat",
        "query_string": b"",
        "headers": [(b"host", b"chat.example.com")],
        "client": ("10.0.0.9", 4000),
    }
    run_asgi(AsgiMiddleware(refuse), scope, [{"type": "websocket.connect"}])
    doc = traced.segment()
    assert doc["http"]["request"]["url"] == "ws://chat.example.com/chat"
    assert doc["http"]["response"]["status"] == 403
    assert doc["error"] is True
