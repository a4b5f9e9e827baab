"""Where the span processor's X-Ray documents go: the daemon over UDP (:class:`UdpSink`), or
PutTraceSegments (:class:`tracekit.xray.sender.SegmentSender`, on hosts without a daemon)."""

from __future__ import annotations

import socket
from typing import Any, Protocol

from tracekit._shared import stats
from tracekit.xray import protocol


class SegmentSink(Protocol):
    """Where serialised segment documents go: the daemon over UDP, PutTraceSegments, or (in the
    sidecar) its buffer. ``submit`` never blocks or raises; False means not kept (and counted)."""

    def submit(self, document: bytes) -> bool: ...

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
    """Datagrams to the X-Ray daemon (or the tracekit sidecar). Never blocks, never raises."""

    def __init__(self, address: tuple[str, int]) -> None:
        self._address = address
        self._resolved: Any = None
        self._sock: socket.socket | None = None

    def submit(self, document: bytes) -> bool:
        try:
            if self._sock is None:
                host, port = self._address
                # An ASCII host as bytes skips loading the idna codec (~1.5 ms of a Lambda cold start).
                query = host.encode() if host.isascii() else host
                info = socket.getaddrinfo(query, port, type=socket.SOCK_DGRAM)[0]
                self._sock = socket.socket(info[0], socket.SOCK_DGRAM)
                self._sock.setblocking(False)
                self._resolved = info[4]
            self._sock.sendto(protocol.encode(document), self._resolved)
            stats.incr("xray.documents_sent")
            return True
        except OSError as exc:
            self._sock = None  # re-resolve next time: the daemon may have moved
            stats.incr("xray.documents_dropped.send_error")
            stats.report("xray.udp_send", exc)
            return False

    def flush(self, timeout: float) -> bool:
        return True

    buffered_bytes = queued = 0
    """A datagram leaves at once: nothing is held."""

    def close(self, timeout: float) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
