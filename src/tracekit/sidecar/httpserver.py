"""A threaded HTTP server with a cap on concurrent connections (one thread each).

``ThreadingHTTPServer`` starts a thread for every connection it accepts; on a port anything in the
task can reach, that is an unbounded resource. Over the cap, connections are closed at once and
counted under ``sidecar.<name>.dropped.too_many_connections``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tracekit import _stats


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """Listen backlog; the default 5 makes a burst of connects wait for SYN retransmits (1 s)."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        name: str,
        owner: Any,
        max_connections: int = 32,
    ) -> None:
        super().__init__(address, handler)
        self.name = name
        self.owner = owner
        """What the handlers serve (the proxy or the admin server)."""
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _stats.incr(f"sidecar.{self.name}.dropped.too_many_connections")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def serve_in_thread(self) -> threading.Thread:
        """Serve until ``shutdown``; polls for it ten times a second."""
        thread = threading.Thread(
            target=self.serve_forever, args=(0.1,), name=f"tracekit-sidecar-{self.name}", daemon=True
        )
        thread.start()
        return thread
