"""Upstream faults at the sidecar: what arrived is counted as sent, the accounting identity holds,
and memory stays within --memory-limit plus a constant."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from sidecar_helpers import HEADER, FlakyUpstream, XRayStub, document, get, send_udp, wait_until

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


MEMORY_SLACK_MB = 8
"""What RSS may grow over idle beyond --memory-limit (README, Reliability)."""


@pytest.mark.parametrize(("size_kb", "limit_mb"), [(1, 4), (8, 16), (60, 16)])
def test_rss_growth_stays_within_the_memory_limit(size_kb: int, limit_mb: int) -> None:
    """A slow upstream and documents sent as fast as UDP goes: the buffer fills and stays full."""
    stub = XRayStub().start()
    stub.delay = 0.2
    proc, udp, _ = _start_sidecar(stub.url, "--memory-limit", str(limit_mb))
    try:
        time.sleep(0.3)
        idle = peak = _rss_mb(proc.pid)
        payloads = [HEADER + b"\n" + document(i, size_kb * 1024 - 40) for i in range(64)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(3 * limit_mb * 1024 // size_kb):
                with contextlib.suppress(OSError):
                    sock.sendto(payloads[i % 64], udp)
                if i % 100 == 0:
                    peak = max(peak, _rss_mb(proc.pid))
                    time.sleep(0.001)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            peak = max(peak, _rss_mb(proc.pid))
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        stub.stop()
    summary = next(json.loads(line) for line in err.splitlines() if "sidecar stopped" in line)
    assert summary["dropped"].get("upstream.buffer_full", 0) > 0  # the limit was reached
    assert peak - idle < limit_mb + MEMORY_SLACK_MB, (idle, peak)


def _start_sidecar(endpoint: str, *extra: str) -> tuple[subprocess.Popen[str], tuple[str, int], str]:
    """The sidecar process (UDP and admin ports only, unless ``extra`` says more); its UDP address
    and its ``/health`` URL."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        udp = probe.getsockname()[:2]
    admin = socket.socket()
    admin.bind(("127.0.0.1", 0))
    admin_port = admin.getsockname()[1]
    admin.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekit.cli", "sidecar", "--region", "us-east-1",
         "--endpoint-url", endpoint, "--udp-address", f"127.0.0.1:{udp[1]}", "--tcp-address", "127.0.0.1:0",
         "--admin-address", f"127.0.0.1:{admin_port}", "--otlp-address", "off", "--emf-address", "off",
         "--shutdown-timeout", "1", *extra],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    health = f"http://127.0.0.1:{admin_port}/health"
    wait_until(lambda: get(health)[0] in (200, 503))
    return proc, udp, health


def test_a_flood_of_emf_lines_and_documents_stays_within_one_memory_limit(stub: XRayStub) -> None:
    """EMF lines come out of --memory-limit, not on top: with X-Ray slow and CloudWatch Logs down,
    what the process buffers (documents, lines, and the copies of batches being sent) stays under it."""
    stub.delay = 0.5
    logs = FlakyUpstream("http://127.0.0.1:9").start()
    logs.outage(120)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        emf = probe.getsockname()[1]
    proc, udp, health = _start_sidecar(
        stub.url, "--memory-limit", "4", "--emf-address", f"127.0.0.1:{emf}", "--logs-endpoint-url",
        logs.url, "--emf-log-group", "/flood", "--emf-log-stream", "s", "--retry-for", "60",
    )  # fmt: skip
    seen: list[dict[str, int]] = []
    try:
        def flood_emf() -> None:
            with socket.create_connection(("127.0.0.1", emf), timeout=10) as conn:
                for i in range(4000):  # 8 MB of lines
                    conn.sendall(_emf_line(i) + b"\n")

        sender = threading.Thread(target=flood_emf)
        sender.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(1000):  # 8 MB of documents
                with contextlib.suppress(OSError):
                    sock.sendto(HEADER + b"\n" + document(i, 8 * 1024), udp)
                if i % 50 == 0:
                    seen.append(json.loads(get(health)[1])["buffers"])
        while sender.is_alive() or len(seen) < 200:
            body = json.loads(get(health)[1])
            assert body["buffer_limit_bytes"] == 4 * 1024 * 1024
            seen.append(body["buffers"])
            time.sleep(0.01)
        sender.join()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        logs.stop()
    peak = max(seen, key=lambda parts: sum(parts.values()))
    assert sum(peak.values()) <= 4 * 1024 * 1024, peak
    assert max(parts["emf"] for parts in seen) > 512 * 1024  # both buffers were full
    assert max(parts["segments"] for parts in seen) > 1024 * 1024
    summary = next(json.loads(line) for line in err.splitlines() if "sidecar stopped" in line)
    assert summary["dropped"]["emf.upstream.buffer_full"] > 0
    assert summary["dropped"]["upstream.buffer_full"] > 0


def _emf_line(i: int) -> bytes:
    metrics = [{"Namespace": "Flood", "Dimensions": [["Route"]], "Metrics": [{"Name": "Latency"}]}]
    aws = {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": metrics}
    return json.dumps({"_aws": aws, "Route": "/r", "Latency": i, "Pad": "p" * 2000}).encode()


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return int(next(x for x in status if x.startswith("VmRSS:")).split()[1]) / 1024


def test_udp_port_accounting_identity_through_refusals_5xx_and_shutdown(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    """datagrams = received + rejected by reason; received = sent + dropped by reason."""
    stub.fail_next(1, status=400, error="InvalidRequestException")
    stub.fail_next(50, status=503, error="ServiceUnavailableException")
    sidecar = make_sidecar(endpoint_url=stub.url, retry_for=0.5, shutdown_timeout=1.0, workers=2)
    bad = [b"", b"no header", b'{"format":"json","version":true}\n{}', HEADER + b"\n "]
    good = [HEADER + b"\n" + document(i) for i in range(600)]
    send_udp(sidecar.udp.address(), *bad, *good)
    wait_until(lambda: _stats.stats().get("sidecar.udp.received") == 600)
    summary = sidecar.shutdown()
    counts = _stats.stats()
    rejected = sum(v for k, v in counts.items() if k.startswith("sidecar.udp.rejected."))
    assert rejected == len(bad) and counts["sidecar.udp.received"] == len(good)
    dropped = sum(v for k, v in counts.items() if k.startswith("sidecar.upstream.dropped."))
    assert counts.get("sidecar.upstream.dropped.rejected") == 50  # the batch refused with 400
    assert summary["sent"] + dropped == 600 == summary["received"], counts
    assert summary["sent"] == stub.delivered


def test_an_xray_outage_logs_one_line_when_it_starts_and_one_when_it_ends(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracekit")
    stub.fail_next(3, status=503, error="ServiceUnavailableException")
    sidecar = make_sidecar(endpoint_url=stub.url, workers=1)
    send_udp(sidecar.udp.address(), *(HEADER + b"\n" + document(i) for i in range(200)))
    wait_until(lambda: _stats.stats().get("sidecar.upstream.sent") == 200)
    outage = [r.getMessage() for r in caplog.records if "sidecar.upstream: upstream" in r.getMessage()]
    assert len(outage) == 2 and "failing (server_error)" in outage[0] and "again" in outage[1], outage
