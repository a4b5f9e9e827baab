"""What the web examples share: a downstream service, a local stand-in daemon, the trace printout.

Not part of tracekit: only here so that each example can run on its own, without AWS or a daemon.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tracekit.xray import protocol
from tracekit.xray.tree import render


class _Inventory(BaseHTTPRequestHandler):
    """``GET /stock/<sku>``: a downstream service that reports the trace header it received."""

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "sku": self.path.rsplit("/", 1)[-1],
                "in_stock": 3,
                "received_trace_header": self.headers.get("X-Amzn-Trace-Id"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def start_inventory() -> str:
    """Start the downstream service on a free loopback port; returns its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Inventory)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


class LocalDaemon:
    """Receives X-Ray documents over UDP like the daemon would, so ``--once`` can print them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.sock.getsockname()
        self.documents: list[dict[str, Any]] = []
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            self.documents.append(json.loads(protocol.decode(self.sock.recv(65535))))

    def print_trace(self, timeout: float = 5.0) -> bool:
        """Wait for a segment with its subsegments, print the tree; False if none came.

        No ``force_flush`` here: the server ends its span just after the client has the response,
        and a flush before that would send the children on their own.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(doc.get("subsegments") for doc in self.documents):
                print(render(self.documents))
                return True
            time.sleep(0.02)
        print(f"no complete trace within {timeout}s; got {self.documents}")
        return False
