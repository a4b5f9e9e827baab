"""The sidecar's HTTP ports (admin, sampling proxy, OTLP): threaded servers that a client cannot hold.

``ThreadingHTTPServer`` starts a thread for every connection and waits for a request as long as the
client likes; on a port anything in the task can reach, that is an unbounded resource. Here:

- at most ``max_connections`` at once; when all are taken, the connection that has waited longest
  for its request headers is closed to make room (``rejected.evicted``): a slow client (one header
  line every few seconds) can never lock out a health check, which sends its headers at once;
  otherwise the new connection is closed (``rejected.too_many_connections``);
- request line and headers must arrive within ``header_timeout`` (``idle_timeout`` for the next
  request on a kept-alive connection), a body within ``read_timeout``: late ones are closed
  (``rejected.timeout``; a request its client abandons is ``rejected.incomplete``);
- folded (obsolete line-continuation) headers are refused with 400 (``rejected.folded_header``):
  they would smuggle a header into the signed upstream request;
- bodies reserve their size from a :class:`ByteBudget` shared by the port's connections;
- a client resetting its connection is counted (``connections.reset``), never a traceback.

Counters go under ``sidecar.<name>`` (or ``stats_prefix``).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tracekit._shared import stats
from tracekit._shared.settings import family_of

HEADER_TIMEOUT = 5.0
"""Seconds from a connection's start to the end of its first request's headers."""
IDLE_TIMEOUT = 15.0
"""Seconds a kept-alive connection may wait for (the headers of) its next request."""
READ_TIMEOUT = 15.0
"""Seconds to read a request body once the headers are in."""


Reply = tuple[int, Mapping[str, str], bytes]
"""What a handler of the sidecar's HTTP ports answers: status, headers, body."""


def send_reply(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    """Status line, headers, ``Content-Length`` and body."""
    status, headers, body = reply
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class ByteBudget:
    """Bytes that a port's connections may hold at once (bodies, partial lines), shared by all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False when that would exceed the limit."""
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


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
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.address_family = family_of(address[0])
        super().__init__(address, handler)
        self.name = name
        self.owner = owner
        """What the handlers serve (the proxy, the admin server, the OTLP receiver)."""
        self.prefix = stats_prefix or f"sidecar.{name}"
        self.header_timeout, self.idle_timeout, self.read_timeout = (
            header_timeout, idle_timeout, read_timeout
        )  # fmt: skip
        self._slots = threading.BoundedSemaphore(max_connections)
        self._waiting: dict[socket.socket, float] = {}
        """Connections waiting for request headers, with the time they started waiting."""
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False) and not self._evict_slowest():
            stats.incr(f"{self.prefix}.rejected.too_many_connections")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def _evict_slowest(self) -> bool:
        """Close the connection waiting longest for its headers; True once its slot is ours."""
        with self._lock:
            if not self._waiting:
                return False
            victim = min(self._waiting, key=self._waiting.__getitem__)
            del self._waiting[victim]
        stats.incr(f"{self.prefix}.rejected.evicted")
        with contextlib.suppress(OSError):
            victim.shutdown(socket.SHUT_RDWR)
        return self._slots.acquire(timeout=1.0)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.waiting(request, False)
            self._slots.release()

    def waiting(self, conn: socket.socket, waiting: bool) -> None:
        """Mark ``conn`` as waiting for request headers (evictable) or not."""
        with self._lock:
            if waiting:
                self._waiting[conn] = time.monotonic()
            else:
                self._waiting.pop(conn, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed connection is one counter (or one JSON line), never a traceback on stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # reset, broken pipe, timed out: the client's doing
            stats.incr(f"{self.prefix}.connections.reset")
            return
        text = f"tracekit sidecar: {self.name} request failed: {type(exc).__name__}: {exc}"
        stats.report(f"{self.prefix}.handler", msg=text)

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


class _DeadlineReader:
    """The request's ``rfile``: every read ends by ``deadline`` (the socket timeout follows it)."""

    def __init__(self, raw: Any, conn: socket.socket) -> None:
        self._raw = raw
        self._conn = conn
        self.deadline = 0.0
        self.timed_out = False
        self.started = False
        """True once a byte of the current request arrived (a timeout before is an idle close)."""

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            raise TimeoutError("request deadline passed")
        self._conn.settimeout(left)

    def readline(self, limit: int = -1) -> bytes:
        self._arm()
        try:
            line: bytes = self._raw.readline(limit)
        except TimeoutError:
            self.timed_out = True
            raise
        self.started = self.started or bool(line)
        return line

    def read(self, n: int = -1) -> bytes:
        self._arm()
        try:
            data: bytes = self._raw.read(n)
        except TimeoutError:
            self.timed_out = True
            raise
        return data

    def close(self) -> None:
        self._raw.close()


class BoundedHandler(BaseHTTPRequestHandler):
    """Base of the sidecar's request handlers: deadlines, eviction marks, no folded headers."""

    server: BoundedHTTPServer
    timeout = READ_TIMEOUT
    _reader: _DeadlineReader
    _requests = 0

    def setup(self) -> None:
        super().setup()
        self._reader = _DeadlineReader(self.rfile, self.connection)
        self.rfile = self._reader  # type: ignore[assignment]

    def handle_one_request(self) -> None:
        server = self.server
        wait = server.header_timeout if self._requests == 0 else server.idle_timeout
        self._requests += 1
        self._reader.deadline = time.monotonic() + wait
        self._reader.started = self._reader.timed_out = False
        server.waiting(self.connection, True)
        try:
            super().handle_one_request()
        except TimeoutError:  # from the header parser's own reads
            self.close_connection = True
        finally:
            server.waiting(self.connection, False)
        if self.close_connection and self._reader.started and not getattr(self, "_answered", False):
            reason = "timeout" if self._reader.timed_out else "incomplete"  # or the client left
            stats.incr(f"{server.prefix}.rejected.{reason}")

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        self.server.waiting(self.connection, False)
        self._reader.deadline = time.monotonic() + self.server.read_timeout
        self._answered = False
        if any("\n" in value or "\r" in value for value in self.headers.values()):
            stats.incr(f"{self.server.prefix}.rejected.folded_header")
            self.close_connection = True
            self.send_error(400, "folded (multi-line) headers are not accepted")
            self._answered = True
            return False
        return True

    def send_response(self, code: int, message: str | None = None) -> None:
        self._answered = True
        self.connection.settimeout(self.server.read_timeout)  # the reply gets its own time
        super().send_response(code, message)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log or stderr lines: the sidecar counts requests and failures instead."""


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
