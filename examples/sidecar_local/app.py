"""A small traced workload for the local sidecar: three orders, the last one fails.

tracekit sends X-Ray segment documents over UDP to ``AWS_XRAY_DAEMON_ADDRESS`` (default
127.0.0.1:2000), exactly as it would to the sidecar in an ECS task.
"""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind

import tracekit


def handle_order(order_id: int, fail: bool) -> None:
    attributes = {"http.method": "POST", "http.url": f"http://shop.local/orders/{order_id}"}
    with tracekit.span("POST /orders", kind=SpanKind.SERVER, attributes=attributes) as span:
        tracekit.annotate("order_id", order_id)
        with tracekit.span("inventory.reserve"):
            time.sleep(0.004)
        with tracekit.span("payments.charge"):
            time.sleep(0.008)
            if fail:
                span.set_attribute("http.status_code", 502)
                raise RuntimeError("card declined by the payment provider")
        span.set_attribute("http.status_code", 201)


def main() -> None:
    tracekit.configure(service="shop")
    for order_id, fail in ((1, False), (2, False), (3, True)):
        try:
            handle_order(order_id, fail)
        except RuntimeError as exc:
            print(f"order {order_id} failed: {exc}")
        else:
            print(f"order {order_id} placed")
    tracekit.shutdown()


if __name__ == "__main__":
    main()
