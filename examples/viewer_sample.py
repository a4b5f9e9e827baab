"""A small shop as X-Ray documents and EMF lines, as its instrumented services would send them.

``frontend`` (ECS) reads the cart from DynamoDB and calls ``orders`` over HTTP; ``orders`` queries
PostgreSQL and calls an external payments API. Used by ``examples/viewer_screenshots.py`` and the
viewer's browser tests; :func:`send` delivers them to a running ``tracekit sidecar --local``.
"""

from __future__ import annotations

import json
import socket
from typing import Any

HEADER = b'{"format": "json", "version": 1}\n'


def shop_trace(number: int, start: float, fail: bool = False) -> tuple[str, list[dict[str, Any]], str]:
    """The trace id, the X-Ray documents (frontend's and orders') and one EMF line of order ``number``."""
    trace_id = f"1-{int(start):08x}-{number:024x}"
    ids = iter(f"{number:08x}{i:08x}" for i in range(1, 20))
    front, dynamo, call, orders, sql, pay = (next(ids) for _ in range(6))

    def at(ms: float) -> float:
        return round(start + ms / 1000, 6)

    exception = {"id": "c0ffee00c0ffee00", "type": "PaymentDeclined", "message": "card declined",
                 "remote": True, "stack": [{"path": "orders/pay.py", "line": 42, "label": "charge"},
                                           {"path": "orders/api.py", "line": 17, "label": "create"}]}
    frontend = {
        "name": "frontend", "id": front, "trace_id": trace_id, "start_time": at(0), "end_time": at(120),
        "origin": "AWS::ECS::Container", "fault": fail,
        "http": {"request": {"method": "POST", "url": "http://shop.local/checkout"},
                 "response": {"status": 500 if fail else 200}},
        "annotations": {"customer": f"c-{number % 5}", "http_route": "/checkout"},
        "metadata": {"default": {"cart": {"items": 3, "currency": "EUR"}}},
        "subsegments": [
            {"name": "validate cart", "id": next(ids), "start_time": at(2), "end_time": at(7)},
            {"name": "DynamoDB", "id": dynamo, "namespace": "aws", "start_time": at(8), "end_time": at(16),
             "aws": {"operation": "GetItem", "table_name": "carts", "region": "eu-west-1"},
             "http": {"response": {"status": 200}}},
            {"name": "orders", "id": call, "namespace": "remote", "start_time": at(20), "end_time": at(110),
             "fault": fail, "http": {"request": {"method": "POST", "url": "http://orders.local/orders"},
                                     "response": {"status": 502 if fail else 201}}},
        ],
    }
    order = {
        "name": "orders", "id": orders, "trace_id": trace_id, "parent_id": call, "start_time": at(25),
        "end_time": at(105), "origin": "AWS::ECS::Container", "fault": fail,
        "http": {"request": {"method": "POST", "url": "http://orders.local/orders"},
                 "response": {"status": 502 if fail else 201}},
        "subsegments": [
            {"name": "postgres", "id": sql, "namespace": "remote", "start_time": at(30), "end_time": at(60),
             "sql": {"url": "postgresql://db.local:5432/shop", "database_type": "PostgreSQL",
                     "sanitized_query": "SELECT * FROM stock WHERE sku = $1"}},
            {"name": "payments.example.com", "id": pay, "namespace": "remote", "start_time": at(62),
             "end_time": at(100), "fault": fail,
             "http": {"request": {"method": "POST", "url": "https://payments.example.com/charge"},
                      "response": {"status": 503 if fail else 200}},
             **({"cause": {"working_directory": "/app", "exceptions": [exception]}} if fail else {})},
        ],
    }
    emf = {"_aws": {"Timestamp": int(at(105) * 1000), "CloudWatchMetrics": [{
        "Namespace": "shop", "Dimensions": [["Service"]],
        "Metrics": [{"Name": "OrderLatency", "Unit": "Milliseconds"}]}]},
        "Service": "orders", "OrderLatency": 80 + number % 7 * 5, "xray_trace_id": trace_id}
    return trace_id, [frontend, order], json.dumps(emf)


def send(udp: tuple[str, int], emf: tuple[str, int] | None, documents: list[dict[str, Any]],
         emf_lines: list[str] = ()) -> None:  # type: ignore[assignment]
    """Documents as daemon-protocol datagrams; EMF lines over TCP, one per line, as the agent takes them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for doc in documents:
            sock.sendto(HEADER + json.dumps(doc).encode(), udp)
    if emf is not None and emf_lines:
        with socket.create_connection(emf, timeout=5) as conn:
            conn.sendall("".join(line + "\n" for line in emf_lines).encode())
