"""Documents the span processor hands over together leave in one ``sendmmsg`` call: every one
arrives whole and in order, over IPv4 and IPv6, with the call or without it."""

from __future__ import annotations

import json
import socket

import pytest

from support.udp_receiver import UdpReceiver
from tracekit._shared import mmsg, stats
from tracekit.xray.transports import UdpSink


def _documents(n: int) -> list[bytes]:
    # small ones, and every tenth up to near the datagram limit: slots of every size are exercised
    sizes = [i * 997 % 60000 if i % 10 == 0 else i for i in range(n)]
    return [json.dumps({"n": i, "pad": "x" * size}).encode() for i, size in enumerate(sizes)]


@pytest.fixture(params=["sendmmsg", "sendto"])
def batch_call(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "sendto":
        monkeypatch.setattr(mmsg, "_libc_sendmmsg", lambda: None)
    return str(request.param)


def test_a_batch_arrives_whole_and_in_order(xray_daemon: UdpReceiver, batch_call: str) -> None:
    stats.reset()
    sink = UdpSink(("127.0.0.1", xray_daemon.port))
    documents = _documents(150)  # more than one call's 64 slots
    assert sink.submit_many(documents) == 150
    received = [json.loads(d.split(b"\n", 1)[1]) for d in _wait(xray_daemon, 150)]
    assert [doc["n"] for doc in received] == list(range(150))
    assert stats.stats()["xray.documents_sent"] == 150
    assert (sink._sender is not None and sink._sender._call is not None) == (batch_call == "sendmmsg")
    sink.close(1.0)


def test_ipv6_addresses_are_packed_for_the_call() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as receiver:
        try:
            receiver.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        receiver.settimeout(5)
        sink = UdpSink(("::1", receiver.getsockname()[1]))
        assert sink.submit_many([json.dumps({"n": i}).encode() for i in range(20)]) == 20
        got = [json.loads(receiver.recv(65536).split(b"\n", 1)[1])["n"] for _ in range(20)]
        assert got == list(range(20))
        sink.close(1.0)


def test_nothing_kept_is_counted_as_sent() -> None:
    stats.reset()
    sink = UdpSink(("127.0.0.1", 9))
    sink._sock = _ClosedSocket()  # a broken socket: the batch fails, is counted and reported, nothing raises
    assert sink.submit_many(_documents(10)) == 0
    counts = stats.stats()
    assert counts["xray.documents_dropped.send_error"] == 10 and "xray.documents_sent" not in counts


class _ClosedSocket(socket.socket):
    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        self.close()


def _wait(receiver: UdpReceiver, n: int) -> list[bytes]:
    receiver.wait_for(n, timeout=5.0)
    return receiver.datagrams()
