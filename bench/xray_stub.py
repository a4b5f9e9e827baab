"""A fast, scriptable stand-in for the X-Ray API (PutTraceSegments, PutTelemetryRecords).

Used by the sidecar benchmark as its upstream and by the sidecar tests for the faults moto cannot
produce: throttling, 5xx, slowness, being down. Counts documents by their segment ``id`` so
duplicates are visible. Run alone (``python bench/xray_stub.py``) it measures its own capacity.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ID = re.compile(rb'\\"id\\": ?\\"([0-9a-f]{16})\\"')
"""A segment id inside a JSON-string-encoded document, without decoding the body."""


class XRayStub:
    """Counts delivered documents; ``fail_next``/``delay`` script faults; ``stop``/``start`` = down."""

    def __init__(self, port: int = 0, keep_documents: bool = False) -> None:
        self.port = port
        self.keep_documents = keep_documents
        self.documents: list[str] = []
        self.ids: set[bytes] = set()
        self.delivered = 0
        self.requests = 0
        self.telemetry: list[dict[str, Any]] = []
        self.headers: dict[str, dict[str, str]] = {}
        """The last request's headers, per path."""
        self.bodies: dict[str, bytes] = {}
        """The last request's body, per path (with ``headers``: enough to check its signature)."""
        self.delay = 0.0
        self._faults: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def duplicates(self) -> int:
        return self.delivered - len(self.ids)

    def start(self) -> XRayStub:
        stub = self

        class Handler(_Handler):
            owner = stub

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Go down: refuse connections until ``start`` (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def fail_next(self, times: int, status: int = 400, error: str = "ThrottledException") -> None:
        """Answer the next ``times`` PutTraceSegments calls with this status and AWS error type."""
        with self._lock:
            self._faults.extend([(status, error)] * times)

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Poll until ``count`` distinct documents arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.ids) >= count:
                return True
            time.sleep(0.02)
        return len(self.ids) >= count

    def _segments(self, body: bytes) -> tuple[int, bytes]:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.requests += 1
            if self._faults:
                status, error = self._faults.pop(0)
                return status, json.dumps({"__type": error, "message": "stub fault"}).encode()
            found = _ID.findall(body)
            self.delivered += len(found)
            self.ids.update(found)
            if self.keep_documents:
                self.documents.extend(json.loads(body)["TraceSegmentDocuments"])
        return 200, b'{"UnprocessedTraceSegments":[]}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    owner: XRayStub

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.owner.headers[self.path] = dict(self.headers.items())
        self.owner.bodies[self.path] = body
        signed = self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 ")
        if not signed and self.path != "/stub/counts":
            status, payload = 403, b'{"__type":"MissingAuthenticationTokenException"}'
        elif self.path == "/TraceSegments":
            status, payload = self.owner._segments(body)
        elif self.path == "/stub/counts":
            stats = {"delivered": self.owner.delivered, "distinct": len(self.owner.ids)}
            status, payload = 200, json.dumps(stats).encode()
        elif self.path == "/TelemetryRecords":
            self.owner.telemetry.append(json.loads(body))
            status, payload = 200, b"{}"
        else:
            status, payload = 404, b'{"__type":"UnknownOperationException"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status >= 400:
            self.send_header("x-amzn-ErrorType", json.loads(payload)["__type"])
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


def document(seq: int, size: int = 1000) -> bytes:
    """A valid ~``size``-byte segment document whose id encodes ``seq``."""
    now = time.time()
    head = (
        f'{{"name":"bench","id":"{seq:016x}","trace_id":"1-{int(now):08x}-{seq:024x}",'
        f'"start_time":{now:.6f},"end_time":{now + 0.001:.6f},"metadata":{{"pad":"'
    )
    return (head + "x" * max(0, size - len(head) - 3) + '"}}').encode()


def measure_capacity(seconds: float = 3.0, connections: int = 4) -> float:
    """Documents per second the stub absorbs from ``connections`` clients sending 50 per call."""
    stub = XRayStub().start()
    body = json.dumps({"TraceSegmentDocuments": [document(i).decode() for i in range(50)]})
    payload = body.encode()
    headers = {"Authorization": "AWS4-HMAC-SHA256 stub", "Content-Type": "application/json"}
    stop = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stub.port)
        while time.monotonic() < stop:
            conn.request("POST", "/TraceSegments", payload, headers)
            conn.getresponse().read()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stub.stop()
    return stub.delivered / seconds


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="capacity measurement length")
    parser.add_argument("--serve", action="store_true", help="serve on a free port (printed)")
    args = parser.parse_args()
    if args.serve:
        served = XRayStub().start()
        print(served.port, flush=True)
        threading.Event().wait()
    print(f"stub capacity: {measure_capacity(args.seconds):,.0f} documents/s (50 per call)")
