"""Where the span processor's X-Ray documents go: the daemon over UDP (:class:`UdpSink`), or
PutTraceSegments (:class:`tracekit.xray.sender.SegmentSender`, on hosts without a daemon)."""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from tracekit._shared import stats
from tracekit._shared.forking import reset_after_fork
from tracekit.xray import protocol

if TYPE_CHECKING:
    from tracekit._shared.mmsg import BatchSender

RESOLVE_WAIT = 1.0
"""Seconds the first document waits for the daemon's name to resolve."""
REFRESH = 60.0
"""Seconds between background look-ups of a daemon name that resolved."""
RETRY = 5.0
"""Seconds between background look-ups of a daemon name that did not resolve."""
_BATCH_MIN = 8
"""Fewer documents go one ``sendto`` each (a Lambda invocation's few): no ctypes to load for them."""


class SegmentSink(Protocol):
    """Where serialised segment documents go: the daemon over UDP, PutTraceSegments, or (in the
    sidecar) its buffer. ``submit`` never blocks or raises; False means not kept (and counted)."""

    def submit(self, document: bytes) -> bool: ...

    def submit_many(self, documents: list[bytes]) -> int:
        """Submit each, in order; returns how many were kept."""
        ...

    def flush(self, timeout: float) -> bool: ...

    def close(self, timeout: float) -> None: ...

    @property
    def buffered_bytes(self) -> int:
        """Bytes of documents held for sending (bounded)."""
        ...

    @property
    def queued(self) -> int:
        """Documents waiting to be sent."""
        ...


class UdpSink:
    """Datagrams to the X-Ray daemon (or the tracekit sidecar). Never blocks, never raises.

    The daemon's name is resolved once, off the sending thread, and refreshed in the background
    every :data:`REFRESH` seconds (the daemon may move); only the very first send waits for it, at
    most :data:`RESOLVE_WAIT`. While the name does not resolve, documents are dropped at once and
    counted (``xray.documents_dropped.unresolved``), so an unresolvable daemon costs the
    application no time per span and none at exit.
    """

    def __init__(self, address: tuple[str, int]) -> None:
        self._address = address
        self._target: tuple[int, Any] | None = _numeric(address)
        """(address family, socket address) once resolved."""
        self._sock: socket.socket | None = None
        self._sender: BatchSender | None = None
        self._reset()
        reset_after_fork(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._resolving = False
        self._attempted = time.monotonic() if self._target is not None else -REFRESH
        self._first = threading.Event()
        if self._target is not None:
            self._first.set()

    def forked(self) -> None:
        """In a forked child: no resolver thread runs; keep what was resolved."""
        self._reset()

    def submit(self, document: bytes) -> bool:
        return self.submit_many([document]) == 1

    def submit_many(self, documents: list[bytes]) -> int:
        """A batch leaves in one ``sendmmsg`` call (:mod:`tracekit._shared.mmsg`): the worker
        keeps the GIL instead of handing it to the application at every document."""
        target = self._resolved()
        if target is None:
            stats.incr("xray.documents_dropped.unresolved", len(documents))
            return 0
        datagrams = [protocol.encode(document) for document in documents]
        sent = 0
        try:
            sock = self._sock
            if sock is None or sock.family != target[0]:
                sock = self._sock = socket.socket(target[0], socket.SOCK_DGRAM)
                sock.setblocking(False)
            if len(datagrams) < _BATCH_MIN:
                for datagram in datagrams:
                    sock.sendto(datagram, target[1])
                    sent += 1
            else:
                sent = self._batch().send(sock, target, datagrams)
        except OSError as exc:
            stats.report("xray.udp_send", exc)
        if sent:
            stats.incr("xray.documents_sent", sent)
        if sent < len(datagrams):
            stats.incr("xray.documents_dropped.send_error", len(datagrams) - sent)
        return sent

    def _resolved(self) -> tuple[int, Any] | None:
        """The daemon's address; None (said once a minute) while its name does not resolve."""
        target = self._target
        if time.monotonic() - self._attempted > (REFRESH if target is not None else RETRY):
            self._refresh()
        if target is None and not self._first.is_set():
            self._first.wait(RESOLVE_WAIT)  # the first document only
            target = self._target
        if target is None:
            stats.warn_once_per_interval(
                "xray.udp_resolve", "tracekit: X-Ray daemon %s:%s does not resolve: documents "
                "are dropped (counted) until it does", *self._address,
            )  # fmt: skip
        return target

    def _batch(self) -> BatchSender:
        if self._sender is None:
            from tracekit._shared.mmsg import BatchSender

            self._sender = BatchSender()
        return self._sender

    def _refresh(self) -> None:
        """Resolve the daemon's name again on a background thread (one at a time)."""
        with self._lock:
            if self._resolving:
                return
            self._resolving = True
            self._attempted = time.monotonic()
        try:
            threading.Thread(target=self._resolve, name="tracekit-xray-resolve", daemon=True).start()
        except RuntimeError:  # out of threads: try again later
            self._resolving = False

    def _resolve(self) -> None:
        host, port = self._address
        try:
            # An ASCII host as bytes skips loading the idna codec (~1.5 ms of a Lambda cold start).
            query = host.encode() if host.isascii() else host
            info = socket.getaddrinfo(query, port, type=socket.SOCK_DGRAM)[0]
            self._target = (info[0], info[4])
        except (OSError, UnicodeError):
            pass  # keep the last good address, if any; submit counts the drops
        finally:
            self._attempted = time.monotonic()
            self._resolving = False
            self._first.set()

    def flush(self, timeout: float) -> bool:
        return True

    buffered_bytes = queued = 0
    """A datagram leaves at once: nothing is held."""

    def close(self, timeout: float) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _numeric(address: tuple[str, int]) -> tuple[int, Any] | None:
    """The target of a numeric address (parsed, no lookup and no wait); None for a name."""
    host, port = address
    for family, sockaddr in ((socket.AF_INET, (host, port)), (socket.AF_INET6, (host, port, 0, 0))):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return family, sockaddr
    return None
