"""The sidecar's CloudWatch-agent EMF endpoint (TCP and UDP, default ``127.0.0.1:25888``).

aws-embedded-metrics, Powertools and tracekit's own agent sink send newline-delimited EMF JSON to
the CloudWatch agent; the sidecar takes its place so a task needs one helper container. Each line is
validated against the EMF specification (:func:`tracekit.metrics.emf.validate`): invalid lines are
counted and logged (rate-limited, naming the problem) and never shipped; valid ones go to a CloudWatch
Logs shipper that batches them into ``PutLogEvents`` with the ``x-amzn-logs-format: json/emf`` header.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import threading
import time
from typing import Protocol

from tracekit._shared import stats

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 25888
MAX_LINE = 1_048_576 - 26
"""The largest PutLogEvents event: 1 MiB including the 26 bytes counted per event."""
MAX_CONNECTIONS = 128
"""TCP connections at once; at the cap a new client evicts the one that has waited longest
(silent ones first, then the oldest unfinished line), so idle agent clients cannot lock the port."""
MAX_BUFFERED = 16 * 1024 * 1024
"""Bytes of partial lines that all TCP connections together may hold; a connection whose line
does not fit is closed (``dropped.buffer_limit``), so 128 clients cannot hold 128 MB."""
IDLE_TIMEOUT = 300.0
"""Seconds a TCP connection may stay silent (agent clients keep theirs open between flushes)."""
LINE_TIMEOUT = 30.0
"""Seconds a line may take from its first byte to its newline; slower connections are closed."""
UDP_BUFFER = 65_535
UDP_RECEIVE_BUFFER = 1024 * 1024
"""Kernel buffer for EMF datagrams, so that a burst of flushes is not dropped by the kernel."""
STATS = "sidecar.emf"


class LineShipper(Protocol):
    """Where valid EMF lines go (``tracekit.logs.cwlogs.LogsShipper`` in the sidecar)."""

    def put(self, message: str, timestamp_ms: int | None = None) -> bool: ...

    @property
    def buffered_bytes(self) -> int: ...

    def close(self, timeout: float) -> object: ...


class EmfReceiver:
    """A sidecar :class:`~tracekit.sidecar.pipeline.Listener`: the agent's EMF port, TCP and UDP.

    Both sockets are bound when it is made, on the same port (a free one for both given port 0).
    """

    name = "emf"

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        shipper: LineShipper,
        max_line: int = MAX_LINE,
        max_connections: int = MAX_CONNECTIONS,
        max_buffered: int = MAX_BUFFERED,
        idle_timeout: float = IDLE_TIMEOUT,
        line_timeout: float = LINE_TIMEOUT,
        shutdown_timeout: float = 10.0,
    ) -> None:
        from tracekit.sidecar.httpserver import ByteBudget

        self.shipper = shipper
        self._max_line = max_line
        self.budget = ByteBudget(max_buffered)
        self._idle_timeout, self._line_timeout = idle_timeout, line_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._shutdown_timeout = shutdown_timeout
        self._tcp, self._udp = _bind_pair(host, port)
        self._conns: dict[socket.socket, tuple[bool, float]] = {}
        """Each TCP connection's state for eviction: (mid-line, waiting since)."""
        self._evicted: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._accept_loop, "tcp"), (self._udp_loop, "udp")):
            thread = threading.Thread(target=target, name=f"tracekit-emf-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop receiving, then ship what is buffered within ``shutdown_timeout``."""
        self._stopping.set()
        for sock in (self._tcp, self._udp):
            _shutdown(sock)
            sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _shutdown(conn)
        for thread in self._threads:
            thread.join(2.0)
        self.shipper.close(self._shutdown_timeout)

    def address(self) -> tuple[str, int]:
        host, port = self._tcp.getsockname()[:2]
        return str(host), int(port)

    @property
    def buffered_bytes(self) -> int:
        """Valid lines waiting to be shipped (their share of ``--memory-limit``)."""
        return self.shipper.buffered_bytes

    # -- lines -----------------------------------------------------------------------------------

    def accept_line(self, line: bytes, origin: str) -> bool:
        """Validate one line and hand it to the shipper; False when rejected or dropped (counted)."""
        line = line.strip()
        if not line:
            return False
        stats.incr(f"{STATS}.received")
        if len(line) > self._max_line:
            return _reject("too_large", origin, f"{len(line)} bytes; at most {self._max_line}")
        return self._check(line, origin)

    def _check(self, line: bytes, origin: str) -> bool:
        try:
            text = line.decode("utf-8")
            doc = json.loads(text)
        except UnicodeDecodeError:
            return _reject("not_utf8", origin, "not UTF-8 text")
        except (ValueError, RecursionError) as exc:
            return _reject("not_json", origin, f"not one JSON object per line ({exc})")
        from tracekit.metrics.emf import validate

        problems = validate(doc)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            return _reject("invalid_emf", origin, problems[0] + more)
        from tracekit.logs.cwlogs import in_window

        if not in_window(doc["_aws"]["Timestamp"]):
            when = f"Timestamp {doc['_aws']['Timestamp']}"
            return _reject("out_of_window", origin, f"{when}: CloudWatch takes 14 days back to 2 h ahead")
        try:
            shipped = self.shipper.put(text, doc["_aws"]["Timestamp"])
        except Exception as exc:  # a failing shipper loses this line, not the connection
            stats.report(f"{STATS}.shipper", exc)
            shipped = False
        if not shipped:
            stats.incr(f"{STATS}.dropped.not_shipped")
            return False
        stats.incr(f"{STATS}.accepted")
        return True

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, peer = self._tcp.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False) and not self._evict_longest_waiting():
                stats.incr(f"{STATS}.rejected.too_many_connections")
                conn.close()
                continue
            with self._lock:
                self._conns[conn] = (False, time.monotonic())
            origin = f"tcp {peer[0]}:{peer[1]}"
            threading.Thread(
                target=self._serve, args=(conn, origin), name="tracekit-emf-conn", daemon=True
            ).start()

    def _evict_longest_waiting(self) -> bool:
        """Close the connection silent longest (else the one with the oldest unfinished line) to
        make room for a new one; True once its slot is ours. Its partial line, if any, is dropped
        (``dropped.evicted``) by its own thread."""
        with self._lock:
            candidates = {c: state for c, state in self._conns.items() if c not in self._evicted}
            if not candidates:
                return False
            victim = min(candidates, key=candidates.__getitem__)
            self._evicted.add(victim)
            mid_line, since = candidates[victim]
        stats.incr(f"{STATS}.connections.evicted")
        what = "with an unfinished line" if mid_line else "silent"
        stats.warn_once_per_interval(
            f"{STATS}.connections.evicted",
            "tracekit sidecar: EMF port at its %d-connection cap: closed one %s for %.0f s to admit a "
            "new client (counted as sidecar.emf.connections.evicted)",
            len(candidates), what, time.monotonic() - since,
        )  # fmt: skip
        _shutdown(victim)
        return self._slots.acquire(timeout=1.0)

    def _mark(self, conn: socket.socket, mid_line: bool, since: float) -> None:
        with self._lock:
            self._conns[conn] = (mid_line, since)

    def _serve(self, conn: socket.socket, origin: str) -> None:
        """Read newline-delimited lines within the idle and line deadlines and the byte budget.

        An overlong line, a line over its deadline or one that the budget cannot hold closes the
        connection (counted): skipping to the next newline would keep reading what is refused. A
        partial line lost with its connection (reset, eviction) is counted too.
        """
        pending = bytearray()
        held = 0  # bytes of the budget this connection holds
        try:
            conn.settimeout(self._idle_timeout)
            line_started = 0.0
            while chunk := conn.recv(65_536):
                if not pending:
                    line_started = time.monotonic()
                pending += chunk
                if b"\n" in chunk:
                    *lines, rest = bytes(pending).split(b"\n")
                    pending = bytearray(rest)
                    for line in lines:
                        self.accept_line(line, origin)
                    line_started = time.monotonic()
                self._mark(conn, bool(pending), line_started)
                if len(pending) > self._max_line:
                    stats.incr(f"{STATS}.received")
                    _reject("too_large", origin, f"a line over {self._max_line} bytes: connection closed")
                    pending.clear()
                    return
                want = -(-len(pending) // 65_536) * 65_536  # reserved in 64 KiB steps
                if want > held and not self.budget.take(want - held):
                    _drop("buffer_limit", origin, "partial lines of all connections over the limit")
                    pending.clear()
                    return
                if want < held:
                    self.budget.give(held - want)
                held = want
                waited = time.monotonic() - line_started
                if pending and waited > self._line_timeout:
                    _drop("line_timeout", origin, f"no newline within {self._line_timeout:g} s")
                    pending.clear()
                    return
                conn.settimeout(self._line_timeout - waited if pending else self._idle_timeout)
            if pending and conn not in self._evicted:  # the client's last line, without newline
                self.accept_line(bytes(pending), origin)
                pending.clear()
        except TimeoutError:
            if pending:
                _drop("line_timeout", origin, f"no newline within {self._line_timeout:g} s")
                pending.clear()
            else:
                stats.incr(f"{STATS}.connections.idle_closed")
        except OSError:
            pass  # the peer went away or stop() or an eviction shut the socket
        except Exception as exc:  # a connection thread must never die noisily
            stats.report(f"{STATS}.connection", exc)
        finally:
            self.budget.give(held)
            with self._lock:
                del self._conns[conn]
                evicted = conn in self._evicted
                self._evicted.discard(conn)
            if pending:  # a line not yet counted, lost with its connection
                reason = "evicted" if evicted else "connection_lost"
                _drop(reason, origin, "closed before the line's newline")
            conn.close()
            self._slots.release()

    def _udp_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                data, peer = self._udp.recvfrom(UDP_BUFFER)
            except TimeoutError:
                continue
            except OSError:
                return
            origin = f"udp {peer[0]}:{peer[1]}"
            try:
                for line in data.split(b"\n"):
                    self.accept_line(line, origin)
            except Exception as exc:
                stats.report(f"{STATS}.datagram", exc)


def _reject(reason: str, origin: str, detail: str) -> bool:
    stats.incr(f"{STATS}.rejected.{reason}")
    stats.warn_once_per_interval(
        f"{STATS}.rejected.{reason}",
        "tracekit sidecar: EMF line from %s rejected (%s): %s",
        origin,
        reason,
        detail,
    )
    return False


def _drop(reason: str, origin: str, detail: str) -> None:
    """A partial line lost with its connection: one line received, dropped for ``reason``."""
    stats.incr(f"{STATS}.received")
    stats.incr(f"{STATS}.dropped.{reason}")
    stats.warn_once_per_interval(
        f"{STATS}.dropped.{reason}", "tracekit sidecar: EMF connection %s closed: %s", origin, detail
    )


def _bind_pair(host: str, port: int, attempts: int = 20) -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket and a UDP socket on the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(attempts):
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            tcp.bind((host, port))
            tcp.listen(128)
            udp.bind((host, tcp.getsockname()[1]))
            udp.settimeout(0.25)  # lets stop() end the receive loop without a datagram
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            return tcp, udp
        except OSError as exc:
            tcp.close()
            udp.close()
            if port != 0 or exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free port for both TCP and UDP on {host}")


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
