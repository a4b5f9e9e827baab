"""The X-Ray SDK's async API through the bridge, in a real asyncio app (FastAPI under uvicorn):
``capture_async``, ``in_subsegment_async`` and ``in_segment_async`` record into tracekit's trace, and
concurrent requests and ``asyncio.gather`` branches keep their own parents."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvicorn
from aws_xray_sdk.core import xray_recorder
from fastapi import FastAPI
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import tracekit
import tracekit.fastapi
import tracekit.xray_sdk
from support.xray_schema import validate_document
from tracekit._shared import stats
from tracekit.tracing import provider
from tracekit.xray.tree import flatten


@xray_recorder.capture_async("price_line")
async def price(n: int) -> int:
    xray_recorder.current_subsegment().put_annotation("line", n)
    await asyncio.sleep(0.01 * (3 - n))  # the branches end in the reverse order
    return n * 10


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, Any]:
        async with xray_recorder.in_subsegment_async("load_order") as loaded:
            loaded.put_annotation("order_id", order_id)
            await asyncio.sleep(0.005)
        totals = await asyncio.gather(*(price(n) for n in range(3)))
        xray_recorder.current_segment().put_annotation("order_id", order_id)
        return {"order": order_id, "total": sum(totals)}

    @app.get("/fail")
    async def fail() -> None:
        @xray_recorder.capture_async("charge")
        async def charge() -> None:
            raise RuntimeError("card declined")

        await charge()

    return tracekit.fastapi.instrument(app)


@pytest.fixture
def bridged(xray_daemon: Any) -> Iterator[Any]:
    stats.reset()
    tracekit.configure(service="orders", exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=ALWAYS_ON)  # fmt: skip
    assert tracekit.xray_sdk.install()
    yield xray_daemon
    tracekit.xray_sdk.uninstall()
    provider.shutdown()


@pytest.fixture
def served(bridged: Any) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(make_app(), host="127.0.0.1", port=0, log_level="error",
                                           lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def nodes(daemon: Any, count: int) -> list[dict[str, Any]]:
    """The trace nodes (segments and subsegments, nested or sent alone) once ``count`` arrived."""
    tracekit.force_flush()
    deadline = time.monotonic() + 10
    while len(flatten(daemon.documents())) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    docs = daemon.documents()
    for doc in docs:
        validate_document(doc)
    found = flatten(docs)
    assert len(found) == count, found
    return found


def segments(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [node for node in found if "parent_id" not in node]


def children(found: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [node for node in found if node.get("parent_id") == parent["id"]]


def test_concurrent_requests_keep_their_async_subsegments_apart(served: str, bridged: Any) -> None:
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: httpx.get(f"{served}/orders/o{i}").json(), range(4)))
    assert answers == [{"order": f"o{i}", "total": 30} for i in range(4)]
    found = nodes(bridged, 4 * 5)  # each request: its segment, load_order and three price_line
    assert len(segments(found)) == 4
    for segment in segments(found):
        order_id = segment["annotations"]["order_id"]
        assert segment["name"] == "orders"
        assert segment["http"]["request"]["url"].endswith(f"/orders/{order_id}")
        below = {(s["name"], s["annotations"].get("line", s["annotations"].get("order_id")))
                 for s in children(found, segment)}  # fmt: skip
        assert below == {("load_order", order_id), *(("price_line", n) for n in range(3))}
        assert all(not children(found, s) for s in children(found, segment))  # siblings, not nested


def test_an_exception_in_a_captured_coroutine_is_recorded_and_raised(served: str, bridged: Any) -> None:
    assert httpx.get(f"{served}/fail").status_code == 500
    found = nodes(bridged, 2)
    (segment,) = segments(found)
    (charge,) = children(found, segment)
    assert charge["name"] == "charge" and charge["parent_id"] == segment["id"] and charge["fault"] is True
    assert charge["cause"]["exceptions"][0]["message"] == "card declined"


def test_in_segment_async_outside_any_request_is_a_trace_of_its_own(bridged: Any) -> None:
    async def nightly() -> None:
        async with xray_recorder.in_segment_async("nightly_report") as segment:
            segment.put_metadata("rows", 3)
            await asyncio.gather(price(1), price(2))

    asyncio.run(nightly())
    found = nodes(bridged, 3)
    (segment,) = segments(found)
    assert segment["name"] == "nightly_report" and segment["metadata"]["default"]["rows"] == 3
    assert sorted(s["annotations"]["line"] for s in children(found, segment)) == [1, 2]
    assert stats.stats().get("xray_sdk.discarded", 0) == 0
