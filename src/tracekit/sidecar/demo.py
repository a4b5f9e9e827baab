"""``tracekit demo``: one traced workload, received locally as X-Ray documents and as OTLP spans.

Needs no AWS account: a daemon-protocol UDP listener and an OTLP/HTTP listener run in this process
on 127.0.0.1, tracekit sends to both, and one trace is printed in both views (the X-Ray tree with
each segment's id, then the OTLP spans with their span and parent ids), followed by a check that
the trace ids, span ids and parents of every trace agree. The X-Ray documents are then kept in a
new local store, and the command that shows them in the trace viewer is printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

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


class Span(NamedTuple):
    """An OTLP span as received: what the demo compares with the X-Ray documents."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str


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
        self.spans: list[Span] = []
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
                    self.server.spans.append(Span(span.trace_id.hex(), span.span_id.hex(),
                                                  span.parent_span_id.hex() or None, span.name))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def run(args: argparse.Namespace) -> int:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    import tracekit

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
    _wait_for(lambda: len(otlp.spans) >= args.orders * SPANS_PER_ORDER
              and len(_xray_pairs(udp.documents)) >= args.orders * SPANS_PER_ORDER)
    print(f"{args.orders} orders traced by tracekit, exported as X-Ray documents (daemon protocol, "
          "UDP) and as OTLP spans (HTTP/protobuf) to two listeners in this process.\n")
    same = _show(udp.documents, otlp.spans, args.orders)
    print(f"tracekit.stats(): {json.dumps(tracekit.stats(), sort_keys=True)}")
    tracekit.shutdown()
    udp.sock.close()
    otlp.shutdown()
    if udp.documents:
        from tracekit.sidecar.traces_cli import DEFAULT_VIEWER_ADDRESS

        path = _keep(udp.documents)
        print(f"\nthe X-Ray documents are stored in {path}; to see them in the trace viewer run\n"
              f"  tracekit traces serve --db {path}\nand open http://{DEFAULT_VIEWER_ADDRESS}/")
    return 0 if same else 1


def _keep(documents: list[dict[str, Any]]) -> Path:
    """The documents in a new local store (a temporary directory: the user's store stays as it is)."""
    from tracekit.sidecar.store import LocalStore

    path = Path(tempfile.mkdtemp(prefix="tracekit-demo-")) / "traces.db"
    store = LocalStore(path, retention=1000, max_bytes=16 << 20)
    for document in documents:
        store.submit(json.dumps(document).encode())
    store.close(5.0)
    return path


SPANS_PER_ORDER = 7
"""checkout, reserve x2, notify, send x2, charge."""


def _wait_for(done: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        time.sleep(0.05)


def _show(documents: list[dict[str, Any]], spans: list[Span], orders: int) -> bool:
    """Print the last order's trace in both views and whether every trace's ids agree."""
    from tracekit.xray.tree import render

    trace = spans[-1].trace_id if spans else ""
    xray_id = f"1-{trace[:8]}-{trace[8:]}"
    docs = [d for d in documents if d.get("trace_id") == xray_id]
    print(f"== X-Ray: one of the {orders} orders, trace {xray_id}, as the X-Ray daemon receives it "
          f"({_count(len(docs), 'document')})")
    print(render(docs, show_ids=True))
    mine = [s for s in spans if s.trace_id == trace]
    print(f"\n== OTLP: the same order, trace {trace}, as an OTLP backend receives it "
          f"({_count(len(mine), 'span')})")
    print(f"{'span id':18}{'parent id':18}name")
    for span, depth in _tree_order(mine):
        print(f"{span.span_id:18}{span.parent_id or '-':18}{'  ' * depth}{span.name}")
    same = _xray_pairs(documents) == {(s.trace_id, s.span_id, s.parent_id) for s in spans}
    traces = _count(len({s.trace_id for s in spans}), "trace")
    print(f"\nids agree: {'yes' if same else 'NO'} ({traces}, {_count(len(spans), 'span')}: the same "
          "trace ids, span ids and parents in X-Ray and OTLP)")
    return same


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'s' * (n != 1)}"


def _xray_pairs(documents: list[dict[str, Any]]) -> set[tuple[str, str, str | None]]:
    """(trace id as 32 hex digits, id, parent id) of every segment and subsegment."""
    from tracekit.xray.tree import flatten

    found = set()
    for doc in documents:
        trace = str(doc.get("trace_id", "")).replace("-", "")[1:]
        found |= {(trace, str(n["id"]), n.get("parent_id")) for n in flatten([doc])}
    return found


def _tree_order(spans: list[Span]) -> Iterator[tuple[Span, int]]:
    """Parents before their children, each with its depth."""
    ids = {s.span_id for s in spans}

    def walk(parent: str | None, depth: int) -> Iterator[tuple[Span, int]]:
        for span in spans:
            if (span.parent_id if span.parent_id in ids else None) == parent:
                yield span, depth
                yield from walk(span.span_id, depth + 1)

    yield from walk(None, 0)


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
