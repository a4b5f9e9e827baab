"""A threaded HTTP server with a cap on concurrent connections (one thread each).

``ThreadingHTTPServer`` starts a thread for every connection it accepts; on a port anything in the
task can reach, that is an unbounded resource. Over the cap, connections are closed at once and
counted under ``<stats_prefix>.rejected.too_many_connections`` (``sidecar.<name>`` by default).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tracekit._shared import stats
from tracekit._shared.settings import family_of


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
        stats_prefix: str | None = None,
    ) -> None:
        self.address_family = family_of(address[0])
        super().__init__(address, handler)
        self.name = name
        self.owner = owner
        """What the handlers serve (the proxy, the admin server, the OTLP receiver)."""
        self._slots = threading.BoundedSemaphore(max_connections)
        self._refused = f"{stats_prefix or 'sidecar.' + name}.rejected.too_many_connections"
        self._thread: threading.Thread | None = None

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            stats.incr(self._refused)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def serve_in_thread(self) -> None:
        """Serve until :meth:`close`; polls for it ten times a second."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.1,), name=f"tracekit-sidecar-{self.name}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving (``shutdown`` would wait forever on a server never started) and unbind."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5.0)
        self.server_close()


class HTTPListener:
    """The :class:`~tracekit.sidecar.pipeline.Listener` half of the sidecar's HTTP ports.

    The admin port, the sampling proxy and the OTLP receiver differ only in their handlers; the
    subclass sets ``self._server`` and gets address/start/stop from here.
    """

    _server: BoundedHTTPServer

    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._server.serve_in_thread()

    def stop(self) -> None:
        """Stop accepting; requests being served finish on their own (daemon) threads."""
        self._server.close()
