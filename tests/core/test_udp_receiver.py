"""The stand-in daemon: what it accepts and rejects mirrors the daemon protocol (aws-facts.md §4)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from support.udp_receiver import UdpReceiver
from tracekit.xray import protocol


@pytest.fixture
def daemon() -> Iterator[tuple[UdpReceiver, socket.socket]]:
    with UdpReceiver() as receiver, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        host, port = receiver.address.split(":")
        sock.connect((host, int(port)))
        yield receiver, sock


def test_documents_are_decoded_in_order(daemon: tuple[UdpReceiver, socket.socket]) -> None:
    receiver, sock = daemon
    for i in range(3):
        sock.send(protocol.encode(json.dumps({"name": f"s{i}"}).encode()))
    assert [d["name"] for d in receiver.wait_for(3)] == ["s0", "s1", "s2"]
    assert receiver.address == f"127.0.0.1:{receiver.port}"
    assert receiver.errors() == []


def test_bad_datagrams_are_rejected_with_the_reason(daemon: tuple[UdpReceiver, socket.socket]) -> None:
    receiver, sock = daemon
    sock.send(b'{"format":"json","version":1}{"name":"no newline"}')
    sock.send(b'{"format":"xml","version":1}\n{"name":"x"}')
    sock.send(protocol.HEADER + b"\n{not json")
    sock.send(protocol.HEADER + b"\n[1, 2]")
    sock.send(protocol.encode(b'{"name":"ok"}'))
    assert [d["name"] for d in receiver.wait_for(1)] == ["ok"]
    assert [reason for reason, _ in receiver.errors()] == [
        "missing_header",
        "invalid_header",
        "invalid_json",
        "not_an_object",
    ]
    assert len(receiver.datagrams()) == 5


def test_large_document_and_clear(daemon: tuple[UdpReceiver, socket.socket]) -> None:
    receiver, sock = daemon
    body = json.dumps({"name": "big", "blob": "x" * (protocol.MAX_DOCUMENT - 40)}).encode()
    sock.send(protocol.encode(body))
    (doc,) = receiver.wait_for(1)
    assert len(receiver.datagrams()[0]) <= protocol.MAX_DATAGRAM and doc["name"] == "big"
    receiver.clear()
    assert receiver.documents() == [] and receiver.datagrams() == [] and receiver.errors() == []


def test_wait_for_timeout_names_what_came(daemon: tuple[UdpReceiver, socket.socket]) -> None:
    receiver, sock = daemon
    sock.send(protocol.encode(b'{"name":"only"}'))
    with pytest.raises(AssertionError, match=r"expected 2 documents.*'only'"):
        receiver.wait_for(2, timeout=0.3)
