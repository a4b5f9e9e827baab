"""The admin port (/health, /metrics) and PutTelemetryRecords."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest
from sidecar_helpers import XRayStub, document, get, send_udp, url, wait_until

from tracekit._shared import stats as _stats
from tracekit.sidecar.runtime import Sidecar
from tracekit.xray.protocol import HEADER


def health(sidecar: Sidecar) -> tuple[int, dict[str, object]]:
    status, body = get(url(sidecar.admin.address(), "/health"))
    return status, json.loads(body)


def test_health_follows_upstream_reachability(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url, health_window=0.5)
    _, body = wait_until(lambda: (r := health(sidecar))[0] == 200 and r)
    assert body["status"] == "ok" and body["mode"] == "xray"
    stub.stop()
    _, body = wait_until(lambda: (r := health(sidecar))[0] == 503 and r)
    assert body["status"] == "unhealthy" and "has not answered" in str(body["reason"])
    stub.start()
    sidecar.telemetry.report()  # type: ignore[union-attr]
    assert health(sidecar)[0] == 200


def test_health_is_503_before_any_answer_with_the_reason(make_sidecar: Callable[..., Sidecar]) -> None:
    sidecar = make_sidecar(endpoint_url="http://127.0.0.1:9")  # discard port: refused
    status, body = wait_until(lambda: (r := health(sidecar))[1].get("upstream_last_error") and r)
    assert status == 503
    assert "not answered yet" in str(body["reason"]) and "Connection" in str(body["reason"])


def test_metrics_expose_counters_gauges_and_latency(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    stub.fail_next(1, 400, "ThrottledException")
    send_udp(sidecar.udp.address(), *(HEADER + b"\n" + document(i) for i in range(5)), b"junk")
    wait_until(lambda: len(stub.ids) == 5)
    status, body = get(url(sidecar.admin.address(), "/metrics"))
    text = body.decode()
    assert status == 200
    for line in (
        "tracekit_sidecar_udp_received_total 5.0",
        'tracekit_sidecar_udp_rejected_total{reason="missing_header"} 1.0',
        "tracekit_sidecar_upstream_sent_total 5.0",
        'tracekit_sidecar_upstream_retries_total{reason="throttled"} 1.0',
        "tracekit_sidecar_queued_documents 0.0",
        "tracekit_sidecar_buffer_limit_bytes 3.3554432e+07",
        "tracekit_sidecar_batch_latency_seconds_count 1.0",
        'tracekit_sidecar_udp_rejected_total{reason="invalid_header"} 0.0',  # declared up front
        'tracekit_sidecar_upstream_dropped_total{reason="buffer_full"} 0.0',
        'tracekit_sidecar_upstream_retries_total{reason="server_error"} 0.0',
    ):
        assert line in text, line
    assert get(url(sidecar.admin.address(), "/nope"))[0] == 404


def test_telemetry_records_report_what_happened(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url, telemetry_interval=0.1)
    send_udp(sidecar.udp.address(), *(HEADER + b"\n" + document(i) for i in range(8)), b"x\n{}")
    wait_until(lambda: len(stub.ids) == 8)

    def total(field: str) -> int:
        return sum(int(b["TelemetryRecords"][0][field]) for b in list(stub.telemetry))

    wait_until(lambda: total("SegmentsSentCount") == 8 and total("SegmentsRejectedCount") == 1)
    assert total("SegmentsReceivedCount") == 8
    assert "Authorization" in stub.headers["/TelemetryRecords"]


def test_stalled_clients_cannot_starve_the_health_check(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracekit.sidecar import admin

    assert 0 < admin._Handler.timeout <= 30  # ECS gives a health check a few seconds
    monkeypatch.setattr(admin._Handler, "timeout", 0.3)
    sidecar = make_sidecar(endpoint_url=stub.url)
    stalled = [socket.create_connection(sidecar.admin.address()) for _ in range(16)]
    try:
        for conn in stalled:
            conn.sendall(b"GET /health HTTP/1.1\r\n")  # never finished
        wait_until(lambda: get(url(sidecar.admin.address(), "/health"))[0] == 200)
    finally:
        for conn in stalled:
            conn.close()


def test_telemetry_counts_refused_calls_not_their_documents(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    stub.fail_next(1, 400, "InvalidRequestException")
    sidecar = make_sidecar(endpoint_url=stub.url, batch_timeout=0.5)
    send_udp(sidecar.udp.address(), *(HEADER + b"\n" + document(i) for i in range(8)))
    wait_until(lambda: _stats.stats().get("sidecar.upstream.dropped.rejected") == 8)
    assert sidecar.telemetry is not None and sidecar.telemetry.report()
    errors = stub.telemetry[-1]["TelemetryRecords"][0]["BackendConnectionErrors"]
    assert errors["HTTPCode4XXCount"] == 1
