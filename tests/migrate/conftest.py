"""Fixtures for the migration tests: a payments HTTP server and the order table in moto."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest


class PaymentsServer:
    """A local HTTP server: POST /charge accepts amounts up to 100 (200), declines more (402)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                owner.requests.append(dict(self.headers))
                ok = int(body.get("amount", 0)) <= 100
                payload = json.dumps({"charged": ok}).encode()
                self.send_response(200 if ok else 402)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                owner.requests.append(dict(self.headers))
                path = self.path.split("?", 1)[0]
                status = int(path.rsplit("/", 1)[-1]) if path.startswith("/status/") else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PaymentsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def payments() -> Iterator[PaymentsServer]:
    with PaymentsServer() as server:
        yield server


@pytest.fixture
def orders_table(moto: str) -> str:
    """An ``orders`` table in moto with o-1 (20, paid) and o-2 (500, declined); yields moto's URL."""
    ddb = boto3.client("dynamodb", endpoint_url=moto, region_name="us-east-1")
    ddb.create_table(TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    for order_id, amount in (("o-1", 20), ("o-2", 500)):
        ddb.put_item(TableName="orders", Item={"id": {"S": order_id}, "amount": {"N": str(amount)},
                                               "items": {"N": "3"}})
    return moto
