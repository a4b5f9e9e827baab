"""RED metrics through the real web middleware (tracekit.flask, written by the web area)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emf_helpers import Capture
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import tracekit


@pytest.fixture(params=["traced", "tracing off"])
def tracing(request: pytest.FixtureRequest) -> Iterator[None]:
    """RED metrics are recorded whether tracing runs (no exporter, all sampled) or is turned off."""
    tracekit.configure(service="red", exporters="none", sampler=ALWAYS_ON,
                       disabled=request.param == "tracing off")
    yield
    tracekit.shutdown()


@pytest.mark.usefixtures("tracing")
def test_flask_middleware_records_red_metrics_per_route(capture: Capture) -> None:
    from flask import Flask, abort

    import tracekit.flask

    app = Flask("red")

    @app.get("/items/<item_id>")
    def item(item_id: str) -> str:
        if item_id == "missing":
            abort(404)
        if item_id == "broken":
            raise RuntimeError("boom")
        return item_id

    tracekit.flask.instrument(app)
    client = app.test_client()
    for path in ("/items/1", "/items/2", "/items/missing", "/items/broken", "/nowhere"):
        client.get(path).close()  # a WSGI server closes the body: the request ends there
    docs = {(d["Route"], d["Method"]): d for d in capture.docs() if "RequestCount" in d}
    route = docs[("/items/<item_id>", "GET")]
    assert (route["RequestCount"], route["ClientErrors"], route["ServerErrors"]) == (4, 1, 1)
    latencies = route["Latency"]
    assert len(latencies) == 4 and all(0 <= v < 5000 for v in latencies)
    assert sum(d["RequestCount"] for d in docs.values()) == 5


@pytest.mark.usefixtures("tracing")
def test_fastapi_middleware_records_red_metrics_per_route(capture: Capture) -> None:
    import asyncio

    import httpx
    from fastapi import FastAPI, HTTPException

    import tracekit.fastapi

    app = FastAPI()

    @app.post("/carts/{cart_id}")
    async def cart(cart_id: int) -> dict[str, int]:
        if cart_id == 404:
            raise HTTPException(404)
        if cart_id == 500:
            raise RuntimeError("boom")
        return {"cart": cart_id}

    tracekit.fastapi.instrument(app)

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [(await client.post(f"/carts/{n}")).status_code for n in (1, 2, 404, 500)]

    assert asyncio.run(calls()) == [200, 200, 404, 500]
    docs = {(d["Route"], d["Method"]): d for d in capture.docs() if "RequestCount" in d}
    route = docs[("/carts/{cart_id}", "POST")]
    assert (route["RequestCount"], route["ClientErrors"], route["ServerErrors"]) == (4, 1, 1)
    assert len(route["Latency"]) == 4
