"""Upstream faults at the sidecar: what arrived is counted as sent, the accounting identity holds,
and memory stays within --memory-limit plus a constant."""

from __future__ import annotations

from collections.abc import Callable

from sidecar_helpers import HEADER, XRayStub, document, send_udp, wait_until

from tracekit._shared import stats as _stats
from tracekit.sidecar.runtime import Sidecar


def test_batches_answered_during_shutdown_are_counted_as_sent_not_unconfirmed(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    """Every document the upstream received is counted as sent; the identity holds at exit."""
    stub.delay = 1.0  # each call takes a while: calls are in flight when the deadline comes
    sidecar = make_sidecar(endpoint_url=stub.url, workers=4, shutdown_timeout=3.0)
    send_udp(sidecar.udp.address(), *(HEADER + b"\n" + document(i) for i in range(3000)))
    wait_until(lambda: _stats.stats().get("sidecar.udp.received") == 3000)
    summary = sidecar.shutdown()
    assert summary["sent"] == stub.delivered > 0
    assert "upstream.unconfirmed_at_exit" not in summary["dropped"], summary
    assert summary["received"] == summary["sent"] + sum(summary["dropped"].values()), summary
