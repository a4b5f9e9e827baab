"""EMF lines through a CloudWatch Logs outage: retried within --retry-for, every line delivered or
counted by reason in /metrics and the shutdown summary; out-of-window lines refused at ingest."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from sidecar_helpers import BASE, FlakyUpstream, XRayStub, get, url, wait_until

from tracekit._shared import stats as _stats
from tracekit.sidecar import ingest
from tracekit.sidecar.runtime import Sidecar

GROUP = "/tracekit/emf-outage"


def emf_line(i: int, timestamp: int | None = None) -> bytes:
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    metrics = [{"Namespace": "Shop", "Dimensions": [["Route"]], "Metrics": [{"Name": "Latency"}]}]
    doc = {"_aws": {"Timestamp": ts, "CloudWatchMetrics": metrics}, "Route": "/cart", "Latency": i}
    return json.dumps(doc).encode()


@pytest.fixture
def flaky(moto: str) -> Iterator[FlakyUpstream]:
    upstream = FlakyUpstream(moto).start()
    yield upstream
    upstream.stop()


def start(stub: XRayStub, logs_url: str, **overrides: Any) -> Sidecar:
    _stats.reset()
    settings = replace(BASE, endpoint_url=stub.url, logs_endpoint_url=logs_url, otlp_address=None,
                       emf_address=("127.0.0.1", 0), emf_log_group=GROUP, emf_log_stream="s",
                       **overrides)  # fmt: skip
    sidecar = Sidecar(settings)
    for listener in ingest.listeners(settings, sidecar.sink, "us-east-1"):
        sidecar.add(listener)
    sidecar.start()
    return sidecar


def send(sidecar: Sidecar, lines: list[bytes]) -> None:
    emf = next(lst for lst in sidecar.listeners if lst.name == "emf")
    with socket.create_connection(emf.address()) as conn:
        conn.sendall(b"\n".join(lines) + b"\n")


def accounted(counts: dict[str, int]) -> tuple[int, int]:
    """(received, what the counters say became of them): the identity the sidecar must keep."""
    emf = "sidecar.emf."
    fates = sum(v for k, v in counts.items() if k.startswith((emf + "rejected.", emf + "dropped.")))
    shipped = counts.get(emf + "upstream.sent", 0) + sum(
        v for k, v in counts.items() if k.startswith(emf + "upstream.dropped.")
    )
    return counts.get(emf + "received", 0), fates + shipped


def test_lines_survive_an_outage_and_out_of_window_lines_are_refused(
    stub: XRayStub, flaky: FlakyUpstream, moto: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracekit")
    sidecar = start(stub, flaky.url, retry_for=30.0)
    flaky.outage(3.0)
    now = int(time.time() * 1000)
    send(sidecar, [emf_line(i) for i in range(2000)] + [emf_line(0, 0), emf_line(0, now + 3 * 3600_000)])
    wait_until(lambda: _stats.stats().get("sidecar.emf.upstream.sent") == 2000, timeout=30)
    assert flaky.failed >= 1
    metrics = get(url(sidecar.admin.address(), "/metrics"))[1].decode()
    assert 'tracekit_sidecar_emf_rejected_total{reason="out_of_window"} 2.0' in metrics
    summary = sidecar.shutdown()
    assert summary["emf_lines_received"] == 2002 and summary["emf_lines_sent"] == 2000
    assert summary["rejected"] == {"emf.out_of_window": 2} and summary["dropped"] == {}
    assert summary["retries"].get("emf.upstream.server_error", 0) + summary["retries"].get(
        "emf.upstream.throttled", 0) >= 1  # fmt: skip
    logs = boto3.client("logs", endpoint_url=moto, region_name="us-east-1")
    events = logs.get_log_events(logGroupName=GROUP, logStreamName="s", limit=10_000)["events"]
    assert len(events) == 2000
    outage = [r.getMessage() for r in caplog.records if "sidecar.emf.upstream" in r.getMessage()]
    assert len(outage) == 2 and "failing" in outage[0] and "answering again" in outage[1], outage


def test_every_line_is_counted_when_the_outage_outlasts_retry_for_and_shutdown(
    stub: XRayStub, flaky: FlakyUpstream
) -> None:
    sidecar = start(stub, flaky.url, retry_for=1.0, shutdown_timeout=1.0)
    flaky.outage(60.0)
    send(sidecar, [emf_line(i) for i in range(300)])
    wait_until(lambda: _stats.stats().get("sidecar.emf.upstream.dropped.retries_exhausted") == 300)
    send(sidecar, [emf_line(i) for i in range(200)] + [b"not json", b"x" * 100])
    wait_until(lambda: _stats.stats().get("sidecar.emf.received") == 502)
    summary = sidecar.shutdown()
    counts = _stats.stats()
    received, fates = accounted(counts)
    assert received == 502 == fates, counts
    dropped = summary["dropped"]
    assert dropped["emf.upstream.retries_exhausted"] >= 300
    assert sum(v for k, v in dropped.items() if k.startswith("emf.upstream.")) == 500
    assert summary["rejected"] == {"emf.not_json": 2}
