"""Bad datagrams, oversized ones and floods: rejected or dropped, always counted, memory bounded."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sidecar_helpers import XRayStub, document, send_udp, wait_until

from tracekit._shared import stats as _stats
from tracekit.sidecar.runtime import Sidecar
from tracekit.xray.protocol import HEADER, MAX_DATAGRAM

datagrams = st.one_of(
    st.binary(min_size=1, max_size=2000),
    st.binary(max_size=500).map(lambda b: HEADER + b"\n" + b),
    st.binary(min_size=1, max_size=200).filter(lambda b: b"\n" not in b).map(lambda b: HEADER + b),
    st.text(max_size=100).map(lambda t: b'{"format":"json","version":2}\n' + t.encode()),
)


def counted() -> int:
    keys = ("sidecar.udp.received", "sidecar.udp.rejected.")
    return sum(v for k, v in _stats.stats().items() if k.startswith(keys))


def test_fuzzed_datagrams_are_received_or_rejected_never_lost(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    address = sidecar.udp.address()
    sent = [0]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(datagrams, min_size=1, max_size=5))
    def fuzz(batch: list[bytes]) -> None:
        send_udp(address, *batch)
        sent[0] += len(batch)

    fuzz()
    wait_until(lambda: counted() == sent[0])
    # the listener still works and the body it never validates goes upstream untouched
    send_udp(address, HEADER + b"\n" + document(7))
    wait_until(lambda: len(stub.ids) >= 1 and b"0000000000000007" in stub.ids)
    rejected = {k: v for k, v in _stats.stats().items() if k.startswith("sidecar.udp.rejected.")}
    assert set(rejected) <= {
        "sidecar.udp.rejected.invalid_header", "sidecar.udp.rejected.missing_header",
        "sidecar.udp.rejected.empty_segment",
    }
    assert rejected


def test_each_rejection_reason_is_counted(make_sidecar: Callable[..., Sidecar], stub: XRayStub) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    send_udp(
        sidecar.udp.address(),
        b"no newline at all",
        b'{"format":"xml","version":1}\n{}',
        HEADER + b"\n   ",
    )
    wait_until(lambda: counted() == 3)
    counts = _stats.stats()
    for reason in ("missing_header", "invalid_header", "empty_segment"):
        assert counts[f"sidecar.udp.rejected.{reason}"] == 1


def test_largest_datagram_arrives_whole(make_sidecar: Callable[..., Sidecar], stub: XRayStub) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    doc = document(42, size=MAX_DATAGRAM - len(HEADER) - 1)
    datagram = HEADER + b"\n" + doc
    assert len(datagram) == MAX_DATAGRAM
    send_udp(sidecar.udp.address(), datagram)
    wait_until(lambda: stub.documents)
    assert stub.documents[0].encode() == doc
    assert json.loads(stub.documents[0])["id"] == f"{42:016x}"


def test_flood_beyond_capacity_keeps_memory_bounded(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    stub.delay = 0.2
    sidecar = make_sidecar(endpoint_url=stub.url, memory_limit=1, workers=1, shutdown_timeout=1.0)
    limit = 1024 * 1024
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.001):
            peak[0] = max(peak[0], sidecar.sink.buffered_bytes)

    watcher = threading.Thread(target=watch)
    watcher.start()
    send_udp(sidecar.udp.address(), *(HEADER + b"\n" + document(i) for i in range(4000)))
    received = wait_until(lambda: counted() == 4000 and _stats.stats()["sidecar.udp.received"])
    sidecar.shutdown()
    done.set()
    watcher.join()
    counts = _stats.stats()
    assert 0 < peak[0] <= limit
    dropped = sum(v for k, v in counts.items() if k.startswith("sidecar.upstream.dropped."))
    assert counts["sidecar.upstream.dropped.buffer_full"] > 0
    sent = counts["sidecar.upstream.sent"]
    assert sent + dropped == received == 4000
    unconfirmed = counts.get("sidecar.upstream.dropped.unconfirmed_at_exit", 0)
    assert sent <= len(stub.ids) <= sent + unconfirmed


def test_upstream_down_then_back_through_the_sidecar(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    stub.stop()
    sidecar = make_sidecar(endpoint_url=stub.url, retry_for=30.0)
    send_udp(sidecar.udp.address(), *(HEADER + b"\n" + document(i) for i in range(400)))
    wait_until(lambda: _stats.stats().get("sidecar.upstream.retries.connection", 0) >= 3)
    assert sidecar.health()[0] is False
    stub.start()
    wait_until(lambda: len(stub.ids) == 400)
    assert sidecar.health()[0] is True
    assert stub.duplicates == 0
    assert not any(".dropped." in key for key in _stats.stats())


def test_stop_takes_what_the_kernel_already_holds() -> None:
    """Datagrams that arrived before SIGTERM but were not read yet are not lost at the stop."""
    from tracekit.sidecar.udp import UdpListener

    class Sink:
        documents: list[bytes] = []
        submit = documents.append

    listener = UdpListener(("127.0.0.1", 0), Sink(), receive_buffer=1)  # type: ignore[arg-type]
    send_udp(listener.address(), *(HEADER + b"\n" + document(i) for i in range(50)))
    listener._stopping = True  # as if SIGTERM came before the reader got to them
    listener.start()
    listener.stop()
    assert len(Sink.documents) == 50
