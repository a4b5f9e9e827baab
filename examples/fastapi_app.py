"""A traced FastAPI service that calls a downstream one: the trace gets a client subsegment.

python examples/fastapi_app.py --once   # one request through uvicorn, prints the trace
python examples/fastapi_app.py          # serves http://127.0.0.1:8000/orders/42; documents go
                                        # to the X-Ray daemon (AWS_XRAY_DAEMON_ADDRESS)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

import tracekit
import tracekit.fastapi
from _support import LocalDaemon, start_inventory

app = FastAPI()


@app.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, Any]:
    stock, price = await asyncio.gather(check_stock("A-1"), price_of("A-1"))
    return {"order": order_id, "sku": "A-1", "price": price, "downstream": stock}


async def check_stock(sku: str) -> dict[str, Any]:
    """A downstream call as a CLIENT span; its trace headers make the callee continue the trace."""
    url = f"{app.state.inventory_url}/stock/{sku}"
    attributes = {"http.request.method": "GET", "url.full": url, "peer.service": "inventory"}
    with tracekit.span("inventory", kind=SpanKind.CLIENT, attributes=attributes) as span:
        headers: dict[str, str] = {}
        inject(headers)  # X-Amzn-Trace-Id and traceparent, Parent = this client span
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(url, headers=headers)
        span.set_attribute("http.response.status_code", response.status_code)
        result: dict[str, Any] = response.json()
        return result


@tracekit.trace
async def price_of(sku: str) -> float:
    await asyncio.sleep(0.001)  # a local computation, traced as a subsegment of its own
    return 19.5


tracekit.fastapi.instrument(app)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="one request, print the trace, exit")
    parser.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    args = parser.parse_args()
    daemon = LocalDaemon() if args.once else None
    if daemon is not None:
        tracekit.configure(service="shop-fastapi", daemon_udp=daemon.address, sampler=ALWAYS_ON)
    else:
        tracekit.configure(service="shop-fastapi")
    app.state.inventory_url = start_inventory()
    port = 0 if args.once else args.port
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    if daemon is None:
        print(f"serving http://127.0.0.1:{port}/orders/42")
        server.run()
        return 0
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/orders/42"
    response = httpx.get(url, timeout=10)
    header = response.headers["x-amzn-trace-id"]
    print(f"GET {url} -> {response.status_code}, X-Amzn-Trace-Id: {header}")
    print(json.dumps(response.json()))
    ok = daemon.print_trace()
    server.should_exit = True
    tracekit.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
