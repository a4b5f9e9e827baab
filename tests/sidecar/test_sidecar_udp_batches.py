"""The UDP listener's batched receive: every datagram whole, in order, never blocking, with and
without ``recvmmsg``; a closed socket is an error the listener reports, not a hang."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator

import pytest
from sidecar_helpers import document, send_udp, wait_until

from tracekit._shared import mmsg as recvmmsg
from tracekit._shared import stats
from tracekit._shared.mmsg import SLOTS, BatchReceiver
from tracekit.sidecar.udp import UdpListener
from tracekit.xray.protocol import HEADER, MAX_DATAGRAM


@pytest.fixture(params=["recvmmsg", "recv"])
def receiver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[BatchReceiver]:
    if request.param == "recv":
        monkeypatch.setattr(recvmmsg, "_libc_recvmmsg", lambda: None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    found = BatchReceiver(sock)
    assert found.batched is (request.param == "recvmmsg")
    yield found
    sock.close()


def drain_all(receiver: BatchReceiver, expected: int) -> list[list[bytes]]:
    batches: list[list[bytes]] = []
    deadline = time.monotonic() + 5
    while sum(map(len, batches)) < expected and time.monotonic() < deadline:
        batch = receiver.drain()
        if batch:
            batches.append(batch)
    return batches


def test_every_datagram_arrives_whole_and_in_order(receiver: BatchReceiver) -> None:
    sizes = [0, 1, 1000, MAX_DATAGRAM, 7, *range(100, 300)]
    sent = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    send_udp(receiver._sock.getsockname(), *sent)
    batches = drain_all(receiver, len(sent))
    assert [d for batch in batches for d in batch] == sent
    assert max(map(len, batches)) <= SLOTS and len(batches) >= len(sent) // SLOTS


def test_nothing_waiting_returns_at_once(receiver: BatchReceiver) -> None:
    started = time.monotonic()
    assert receiver.drain() == [] and receiver.drain() == []
    assert time.monotonic() - started < 0.5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="recvmmsg is Linux's")
def test_a_closed_socket_raises_instead_of_hanging() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    receiver = BatchReceiver(sock)
    sock.close()
    with pytest.raises(OSError):
        receiver.drain()


def test_listener_hands_on_a_burst_and_counts_it_once_per_batch() -> None:
    """A burst larger than one batch, with bad datagrams among it: every document handed on in
    order, the bad ones counted by reason, ``received`` equal to the documents handed on."""

    class Sink:
        documents: list[bytes] = []

        def submit(self, doc: bytes) -> bool:
            self.documents.append(doc)
            return True

    stats.reset()
    sink = Sink()
    listener = UdpListener(("127.0.0.1", 0), sink, receive_buffer=4)  # type: ignore[arg-type]
    good = [HEADER + b"\n" + document(i) for i in range(3 * SLOTS)]
    burst = [*good[:SLOTS], b"no newline", *good[SLOTS:], b'{"format":"xml"}\nx']
    send_udp(listener.address(), *burst)  # waits in the kernel until the listener starts
    listener.start()
    try:
        wait_until(lambda: len(sink.documents) == len(good))
    finally:
        listener.stop()
    assert sink.documents == [d.partition(b"\n")[2] for d in good]
    counts = stats.stats()
    assert counts["sidecar.udp.received"] == len(good)
    assert counts["sidecar.udp.rejected.missing_header"] == 1
    assert counts["sidecar.udp.rejected.invalid_header"] == 1
