"""``tracekit demo``: one traced workload, received locally as X-Ray documents and as OTLP spans.

Needs no AWS account: a daemon-protocol UDP listener and an OTLP/HTTP listener run in this process
on 127.0.0.1, tracekit sends to both, and the two views of the same trace are printed side by side
with a check that their trace and span ids agree.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tracekit._shared.settings import positive


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a traced example and print what X-Ray and an OTLP backend would receive",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=positive(int), default=2, help="how many example orders to trace")
    parser.set_defaults(handler=run)


class _UdpListener:
    """Collects daemon-protocol datagrams."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.documents: list[dict[str, Any]] = []
        threading.Thread(target=self._run, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        from tracekit.xray import protocol

        while True:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.documents.append(json.loads(protocol.decode(data)))


class _OtlpListener(ThreadingHTTPServer):
    """Decodes OTLP/HTTP protobuf trace exports."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.spans: list[dict[str, str]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _OtlpHandler(BaseHTTPRequestHandler):
    server: _OtlpListener

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.append(
                        {"trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                         "name": span.name}
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def run(args: argparse.Namespace) -> int:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    import tracekit
    from tracekit.xray.tree import flatten, render

    udp, otlp = _UdpListener(), _OtlpListener()
    tracekit.configure(
        service="demo-shop",
        exporters=["xray", "otlp"],
        daemon_udp=("127.0.0.1", udp.port),
        otlp_endpoint=f"http://127.0.0.1:{otlp.server_address[1]}/v1/traces",
        sampler=ALWAYS_ON,
    )
    for number in range(args.orders):
        _checkout(number)
    tracekit.force_flush()
    deadline = time.monotonic() + 5
    expected = args.orders * 7
    while time.monotonic() < deadline and (len(otlp.spans) < expected or not udp.documents):
        time.sleep(0.05)
    nodes = flatten(udp.documents)
    print(f"X-Ray: {len(udp.documents)} documents, {len(nodes)} segments/subsegments received over UDP")
    print(render(udp.documents))
    print(f"\nOTLP: {len(otlp.spans)} spans received over HTTP/protobuf")
    xray_ids = {(n.get("trace_id", ""), n["id"]) for n in nodes}
    otlp_ids = {s["span_id"] for s in otlp.spans}
    same = {i for _, i in xray_ids} == otlp_ids
    print(f"same span ids in both: {'yes' if same else 'NO'}")
    print(f"tracekit.stats(): {json.dumps(tracekit.stats(), sort_keys=True)}")
    tracekit.shutdown()
    udp.sock.close()
    otlp.shutdown()
    return 0 if same else 1


def _checkout(number: int) -> None:
    import tracekit

    @tracekit.trace(name="checkout", annotations={"order": number})
    def checkout() -> None:
        tracekit.add_metadata("cart", {"items": 3, "currency": "EUR"})
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(reserve, ["book", "lamp"]))
        asyncio.run(notify())
        with contextlib.suppress(RuntimeError):
            charge()

    @tracekit.trace
    def reserve(item: str) -> None:
        tracekit.annotate("item", item)
        time.sleep(0.002)

    @tracekit.trace
    async def notify() -> None:
        await asyncio.gather(send("email"), send("sms"))

    @tracekit.trace
    async def send(channel: str) -> None:
        tracekit.annotate("channel", channel)
        await asyncio.sleep(0.001)

    @tracekit.trace
    def charge() -> None:
        if number % 2:
            raise RuntimeError("card declined")

    checkout()
