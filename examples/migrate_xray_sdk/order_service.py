"""An order service instrumented with the AWS X-Ray SDK for Python: the "before" of the migration.

Nothing here knows about tracekit. Run it as it is (``python order_service.py o-1 o-2``: the X-Ray
SDK sends to the daemon), or through ``with_tracekit.py``, which adds the one line that moves it
onto tracekit. Settings: ``ORDERS_TABLE``, ``PAYMENTS_URL``, and the usual AWS variables
(``AWS_ENDPOINT_URL_DYNAMODB`` points boto3 at a local DynamoDB).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import boto3
import requests
from aws_xray_sdk.core import patch_all, xray_recorder

xray_recorder.configure(service="order-service", sampling=False)  # every request traced
patch_all()

TABLE = os.environ.get("ORDERS_TABLE", "orders")
PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "http://127.0.0.1:8080/charge")
dynamodb = boto3.client("dynamodb")


class PaymentDeclined(Exception):
    pass


@xray_recorder.capture("load_order")
def load_order(order_id: str) -> dict[str, Any]:
    item = dynamodb.get_item(TableName=TABLE, Key={"id": {"S": order_id}}, ConsistentRead=True)["Item"]
    xray_recorder.current_subsegment().put_metadata("items", int(item["items"]["N"]), "orders")
    return item


def charge(order: dict[str, Any]) -> dict[str, Any]:
    with xray_recorder.in_subsegment("process_payment") as subsegment:
        amount = int(order["amount"]["N"])
        subsegment.put_annotation("amount", amount)
        response = requests.post(f"{PAYMENTS_URL}?attempt=1", json={"amount": amount}, timeout=5)
        if response.status_code >= 400:
            raise PaymentDeclined(f"payment of {amount} declined ({response.status_code})")
        result: dict[str, Any] = response.json()
        return result


@xray_recorder.capture("process_order")
def process_order(order_id: str) -> dict[str, str]:
    subsegment = xray_recorder.current_subsegment()
    subsegment.put_annotation("order_id", order_id)
    order = load_order(order_id)
    try:
        charge(order)
    except PaymentDeclined as exc:
        subsegment.add_exception(exc, traceback.extract_stack())
        subsegment.put_metadata("declined", {"order_id": order_id}, "payments")
        return {"order_id": order_id, "status": "declined"}
    return {"order_id": order_id, "status": "paid"}


def handle(order_id: str) -> dict[str, str]:
    """One request: the segment a web framework's X-Ray middleware would open."""
    segment = xray_recorder.begin_segment("order-service")
    try:
        segment.put_annotation("customer_tier", "gold")
        segment.set_user("customer-42")
        segment.put_http_meta("method", "POST")
        segment.put_http_meta("url", f"https://orders.example.com/orders/{order_id}")
        result = process_order(order_id)
        segment.put_http_meta("status", 200)
        return result
    finally:
        xray_recorder.end_segment()


def main(order_ids: list[str]) -> None:
    for order_id in order_ids or ["o-1", "o-2"]:
        print(json.dumps(handle(order_id)))


if __name__ == "__main__":
    main(sys.argv[1:])
