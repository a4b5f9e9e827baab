"""A traced Flask service that calls a downstream one: the trace gets a client subsegment.

python examples/flask_app.py --once   # one request through a real server, prints the trace
python examples/flask_app.py          # serves http://127.0.0.1:8000/orders/42; documents go to
                                      # the X-Ray daemon (AWS_XRAY_DAEMON_ADDRESS, 127.0.0.1:2000)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import urllib.request
from typing import Any

from flask import Flask
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind
from werkzeug.serving import make_server

import tracekit
import tracekit.flask
from _support import LocalDaemon, start_inventory

app = Flask("shop")


@app.get("/orders/<order_id>")
def order(order_id: str) -> dict[str, Any]:
    stock = check_stock(app.config["INVENTORY_URL"], "A-1")
    return {"order": order_id, "sku": "A-1", "in_stock": stock["in_stock"], "downstream": stock}


def check_stock(base_url: str, sku: str) -> dict[str, Any]:
    """A downstream call as a CLIENT span; its trace headers make the callee continue the trace."""
    url = f"{base_url}/stock/{sku}"
    attributes = {"http.request.method": "GET", "url.full": url, "peer.service": "inventory"}
    with tracekit.span("inventory", kind=SpanKind.CLIENT, attributes=attributes) as span:
        headers: dict[str, str] = {}
        inject(headers)  # X-Amzn-Trace-Id and traceparent, Parent = this client span
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as rsp:
            span.set_attribute("http.response.status_code", rsp.status)
            result: dict[str, Any] = json.load(rsp)
            return result


tracekit.flask.instrument(app)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="one request, print the trace, exit")
    parser.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    daemon = LocalDaemon() if args.once else None
    if daemon is not None:
        tracekit.configure(service="shop-flask", daemon_udp=daemon.address, sampler=ALWAYS_ON)
    else:
        tracekit.configure(service="shop-flask")
    app.config["INVENTORY_URL"] = start_inventory()
    server = make_server("127.0.0.1", 0 if args.once else args.port, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}/orders/42"
    if daemon is None:
        print(f"serving {url}")
        server.serve_forever()
        return 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with urllib.request.urlopen(url, timeout=10) as response:
        header = response.headers["X-Amzn-Trace-Id"]
        print(f"GET {url} -> {response.status}, X-Amzn-Trace-Id: {header}")
        print(json.dumps(json.load(response)))
    ok = daemon.print_trace()
    server.shutdown()
    tracekit.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
