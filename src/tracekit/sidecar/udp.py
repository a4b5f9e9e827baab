"""The X-Ray daemon's UDP listener: header + newline + document, one document per datagram."""

from __future__ import annotations

import logging
import socket
import threading

from tracekit._shared import stats
from tracekit._shared.mmsg import BatchReceiver
from tracekit._shared.settings import family_of
from tracekit.xray.protocol import ProtocolError, decode
from tracekit.xray.transports import SegmentSink

logger = logging.getLogger("tracekit.sidecar")
SO_RCVBUFFORCE = 33
"""Linux: set the receive buffer above ``net.core.rmem_max`` (needs CAP_NET_ADMIN)."""
RECV_SIZE = 65536
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}
"""Where to reach a socket bound to every address."""


class UdpListener:
    """Receive daemon datagrams on one thread and hand each valid document to the sink.

    The thread waits for one datagram, then takes what else the kernel holds in batches
    (:class:`~tracekit._shared.mmsg.BatchReceiver`), counted once per batch.
    """

    name = "udp"

    def __init__(self, address: tuple[str, int], sink: SegmentSink, receive_buffer: int) -> None:
        self._sink = sink
        self._sock = socket.socket(family_of(address[0]), socket.SOCK_DGRAM)
        self.receive_buffer = _set_receive_buffer(self._sock, receive_buffer)
        self._sock.bind(address)
        self._batch = BatchReceiver(self._sock)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tracekit-sidecar-udp", daemon=True)

    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop receiving after taking what the kernel already holds."""
        self._stopping = True
        host, port = self.address()
        wake = socket.socket(self._sock.family, socket.SOCK_DGRAM)
        try:
            wake.sendto(b"", (LOOPBACK.get(host, host), port))
        finally:
            wake.close()
        self._thread.join(5.0)
        self._sock.close()

    def _run(self) -> None:
        recv, drain = self._sock.recv, self._batch.drain
        while not self._stopping:
            try:
                datagrams = [recv(RECV_SIZE)]  # waits, the GIL released
                while datagrams:
                    self._handle(datagrams)
                    datagrams = [] if self._stopping else drain()  # the GIL kept
            except Exception as exc:  # the listener must outlive any one datagram
                stats.report("sidecar.udp.receive", exc)
        self._drain()

    def alive(self) -> bool:
        """True while the receive thread runs (``/health`` reports a dead one)."""
        return self._thread.is_alive()

    def _drain(self) -> None:
        while True:
            try:
                datagrams = self._batch.drain()
            except OSError as exc:
                stats.report("sidecar.udp.receive", exc)
                return
            if not datagrams:
                return
            self._handle(datagrams)

    def _handle(self, datagrams: list[bytes]) -> None:
        received = 0
        submit = self._sink.submit
        for datagram in datagrams:
            document = self._document(datagram)
            if document is not None:
                received += 1
                submit(document)
        if received:
            stats.incr("sidecar.udp.received", received)

    def _document(self, datagram: bytes) -> bytes | None:
        """The document in a datagram, or None for a rejected one (counted by reason)."""
        if not datagram:
            if not self._stopping:  # stop() wakes the loop with an empty datagram of its own
                stats.incr("sidecar.udp.rejected.empty_datagram")
            return None
        try:
            return decode(datagram)
        except ProtocolError as exc:
            stats.incr(f"sidecar.udp.rejected.{exc.reason}")
            stats.warn_once_per_interval(
                f"sidecar.udp.{exc.reason}", "rejected datagram (%d bytes): %s", len(datagram), exc
            )
            return None


def _set_receive_buffer(sock: socket.socket, megabytes: int) -> int:
    """Ask for a large SO_RCVBUF so bursts wait in the kernel; returns what the kernel granted."""
    size = megabytes * 1024 * 1024
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if granted < size:
        logger.warning(
            "UDP receive buffer is %d bytes, %d asked: raise net.core.rmem_max", granted, size
        )
    return int(granted)
