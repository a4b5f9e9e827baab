"""tracekit.fastapi and tracekit.asgi under a real uvicorn server, with httpx and WebSockets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
import websockets.sync.client
from fastapi import FastAPI, HTTPException, WebSocket
from fastapi.responses import StreamingResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from web_helpers import SERVICE, Traced, serve_in_thread

import tracekit
import tracekit.fastapi
from tracekit._shared import stats as _stats
from tracekit.asgi import TraceMiddleware
from tracekit.tracing import provider

INBOUND_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
INBOUND_PARENT = "53995c3f42cd8ad8"


def make_app(**options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        with tracekit.span("lookup"):
            return {"id": item_id}

    @app.get("/gather")
    async def gather() -> dict[str, list[int]]:
        async def work(n: int) -> int:
            with tracekit.span(f"work-{n}"):
                await asyncio.sleep(0.001 * n)
                return n

        return {"results": list(await asyncio.gather(work(1), work(2), work(3)))}

    @app.get("/sync/{n}")
    def in_threadpool(n: int) -> dict[str, int]:
        with tracekit.span("sync-work"):
            return {"n": n}

    @app.get("/status/{code}")
    async def status(code: int) -> None:
        raise HTTPException(code)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("inventory offline")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            for i in range(3):
                with tracekit.span(f"chunk-{i}"):
                    await asyncio.sleep(0.002)
                    yield f"part{i};"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.websocket("/ws/{room}")
    async def chat(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        with tracekit.span("echo"):
            await websocket.send_text(f"{room}:{text.upper()}")
        await websocket.close()

    @app.get("/healthz")
    async def health() -> str:
        return "ok"

    return tracekit.fastapi.instrument(app, **options)


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Start an app under a real uvicorn server on a free loopback port; returns its base URL."""
    stops: list[Callable[[], None]] = []

    def start(app: Any) -> str:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
        server = uvicorn.Server(config)

        def stop() -> None:
            server.should_exit = True

        stops.append(serve_in_thread(server.run, stop))
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    yield start
    for stop in stops:
        stop()


def test_one_segment_per_request_named_by_route_template(traced: Traced, serve: Any) -> None:
    address = serve(make_app())
    response = httpx.get(f"http://{address}/items/42?x=1", headers={"User-Agent": "pytest-agent"})
    assert response.json() == {"id": 42}
    doc = traced.segment()
    assert doc["name"] == SERVICE
    assert doc["http"]["request"] == {
        "method": "GET",
        "url": f"http://{address}/items/42?x=1",
        "user_agent": "pytest-agent",
        "client_ip": "127.0.0.1",
    }
    assert doc["http"]["response"] == {"status": 200, "content_length": len(response.content)}
    assert [s["name"] for s in doc["subsegments"]] == ["lookup"]
    assert [s.name for s in traced.server_spans()] == ["/items/{item_id}"]
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={doc['trace_id']}"


def test_asyncio_gather_and_threadpool_keep_one_trace(traced: Traced, serve: Any) -> None:
    address = serve(make_app())
    with httpx.Client(base_url=f"http://{address}") as client:
        assert client.get("/gather").json() == {"results": [1, 2, 3]}
        assert client.get("/sync/5").json() == {"n": 5}
    gathered, threaded = sorted(traced.documents(2), key=lambda d: d["start_time"])
    assert sorted(s["name"] for s in gathered["subsegments"]) == ["work-1", "work-2", "work-3"]
    assert [s["name"] for s in threaded["subsegments"]] == ["sync-work"]


@pytest.mark.parametrize(
    ("code", "flags"),
    [(404, {"error"}), (429, {"error", "throttle"}), (503, {"fault"})],
)
def test_http_exceptions_map_to_error_throttle_fault(
    traced: Traced, serve: Any, code: int, flags: set[str]
) -> None:
    address = serve(make_app())
    assert httpx.get(f"http://{address}/status/{code}").status_code == code
    doc = traced.segment()
    assert {k for k in ("error", "throttle", "fault") if doc.get(k)} == flags
    assert "cause" not in doc


def test_unhandled_exception_gives_500_with_header_and_fault_with_cause(
    traced: Traced, serve: Any
) -> None:
    address = serve(make_app())
    response = httpx.get(f"http://{address}/boom")
    assert response.status_code == 500
    doc = traced.segment()
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={doc['trace_id']}"
    assert doc["fault"] is True and doc["http"]["response"]["status"] == 500
    [exc] = doc["cause"]["exceptions"]
    assert (exc["type"], exc["message"]) == ("RuntimeError", "inventory offline")
    assert exc["stack"][0]["label"] == "boom"


def test_inbound_headers_continue_the_trace(traced: Traced, serve: Any) -> None:
    address = serve(make_app())
    header = f"Root={INBOUND_ROOT};Parent={INBOUND_PARENT};Sampled=?"
    response = httpx.get(f"http://{address}/items/1", headers={"X-Amzn-Trace-Id": header})
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={INBOUND_ROOT};Sampled=1"
    parent = "00-5759e988bd862e3fe1be46a994272793-00000000000000aa-01"
    httpx.get(f"http://{address}/items/2", headers={"traceparent": parent})
    first, second = sorted(traced.documents(2), key=lambda d: d["start_time"])
    assert (first["trace_id"], first["parent_id"]) == (INBOUND_ROOT, INBOUND_PARENT)
    assert (second["trace_id"], second["parent_id"]) == (INBOUND_ROOT, "00000000000000aa")
    assert "url" in first["http"]["request"]


def test_streaming_response_is_covered_and_counted(traced: Traced, serve: Any) -> None:
    address = serve(make_app())
    response = httpx.get(f"http://{address}/stream")
    assert response.text == "part0;part1;part2;"
    doc = traced.segment()
    assert doc["http"]["response"] == {"status": 200, "content_length": 18}
    children = sorted(doc["subsegments"], key=lambda s: s["start_time"])
    assert [s["name"] for s in children] == ["chunk-0", "chunk-1", "chunk-2"]
    assert children[-1]["end_time"] <= doc["end_time"]


def test_websocket_connection_is_one_segment(traced: Traced, serve: Any) -> None:
    address = serve(make_app())
    with websockets.sync.client.connect(f"ws://{address}/ws/lobby") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "lobby:HELLO"
    doc = traced.segment()
    assert doc["http"]["request"]["url"] == f"ws://{address}/ws/lobby"
    assert doc["http"]["response"]["status"] == 101
    assert [s["name"] for s in doc["subsegments"]] == ["echo"]
    assert [s.name for s in traced.server_spans()] == ["/ws/{room}"]


def test_excluded_urls_default_then_the_fastapi_variable_replacing_it(
    traced: Traced, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with httpx.Client(base_url=f"http://{serve(make_app())}") as client:
        assert "X-Amzn-Trace-Id" not in client.get("/healthz").headers
        assert "X-Amzn-Trace-Id" in client.get("/items/1").headers
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "/items/1$")
    with httpx.Client(base_url=f"http://{serve(make_app())}") as client:
        assert "X-Amzn-Trace-Id" not in client.get("/items/1").headers
        assert "X-Amzn-Trace-Id" in client.get("/healthz").headers
    urls = [d["http"]["request"]["url"] for d in traced.documents(2)]
    assert [urlsplit(u).path for u in urls] == ["/items/1", "/healthz"]


def test_plain_starlette_app_gets_route_templates(traced: Traced, serve: Any) -> None:
    async def user(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["name"])

    app = TraceMiddleware(Starlette(routes=[Route("/users/{name}", user)]))
    address = serve(app)
    with httpx.Client(base_url=f"http://{address}") as client:
        assert client.get("/users/ada").text == "ada"
        assert client.get("/missing").status_code == 404
    assert sorted(s.name for s in traced.wait_server_spans(2)) == ["/users/{name}", "GET"]
    assert len(traced.documents(2)) == 2


def test_instrument_again_with_other_options_warns_once_in_one_line(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        assert tracekit.fastapi.instrument(app) is app  # the same options: nothing to say
        assert not caplog.records
        tracekit.fastapi.instrument(app, capture_headers=["X-Tenant"], record_metrics=False)
        tracekit.fastapi.instrument(app, capture_headers=["X-Tenant"], record_metrics=False)
    [message] = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    assert "\n" not in message and "already instrumented" in message
    assert "capture_headers" in message and "record_metrics" in message and "excluded_urls" not in message
    assert _stats.stats()["fastapi.reinstrumented"] == 2


def test_tracing_failures_never_reach_the_application(
    traced: Traced, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = serve(make_app())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(provider, "get_tracer", broken)
    assert httpx.get(f"http://{address}/items/3").json() == {"id": 3}
    assert _stats.stats()["errors.web.start"] == 1
    monkeypatch.undo()
    monkeypatch.setattr("opentelemetry.sdk.trace.Span.end", broken)
    assert httpx.get(f"http://{address}/items/4").json() == {"id": 4}
    deadline = time.monotonic() + 5
    while "errors.web.finish" not in _stats.stats():  # the span ends after the response is sent
        assert time.monotonic() < deadline
        time.sleep(0.005)
