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
from typing import Protocol

from tracekit._shared import stats

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 25888
MAX_LINE = 1_048_576 - 26
"""The largest PutLogEvents event: 1 MiB including the 26 bytes counted per event."""
MAX_CONNECTIONS = 128
UDP_BUFFER = 65_535
UDP_RECEIVE_BUFFER = 1024 * 1024
"""Kernel buffer for EMF datagrams, so that a burst of flushes is not dropped by the kernel."""
STATS = "sidecar.emf"


class LineShipper(Protocol):
    """Where valid EMF lines go (``tracekit.logs.cwlogs.LogsShipper`` in the sidecar)."""

    def put(self, message: str, timestamp_ms: int | None = None) -> bool: ...

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
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.shipper = shipper
        self._max_line = max_line
        self._slots = threading.BoundedSemaphore(max_connections)
        self._shutdown_timeout = shutdown_timeout
        self._tcp, self._udp = _bind_pair(host, port)
        self._conns: set[socket.socket] = set()
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

    # -- lines -----------------------------------------------------------------------------------

    def accept_line(self, line: bytes, origin: str) -> bool:
        """Validate one line and hand it to the shipper; False when rejected or dropped (counted)."""
        line = line.strip()
        if not line:
            return False
        stats.incr(f"{STATS}.received")
        if len(line) > self._max_line:
            return _reject("too_large", origin, f"{len(line)} bytes; at most {self._max_line}")
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
            if not self._slots.acquire(blocking=False):
                stats.incr(f"{STATS}.rejected.too_many_connections")
                conn.close()
                continue
            with self._lock:
                self._conns.add(conn)
            origin = f"tcp {peer[0]}:{peer[1]}"
            threading.Thread(
                target=self._serve, args=(conn, origin), name="tracekit-emf-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket, origin: str) -> None:
        """Read newline-delimited lines; an overlong line is skipped up to its newline."""
        pending = b""
        skipping = False
        try:
            while chunk := conn.recv(65_536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if skipping:
                        skipping = False
                    else:
                        self.accept_line(line, origin)
                if len(pending) > self._max_line:
                    if not skipping:
                        _reject("too_large", origin, f"a line over {self._max_line} bytes")
                    skipping, pending = True, b""
            if pending and not skipping:
                self.accept_line(pending, origin)
        except OSError:
            pass  # the peer went away or stop() shut the socket
        except Exception as exc:  # a connection thread must never die noisily
            stats.report(f"{STATS}.connection", exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
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
