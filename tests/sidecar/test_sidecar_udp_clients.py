"""Real clients through the sidecar's UDP port into moto: every document arrives, none twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind
from sidecar_helpers import wait_until

import tracekit
from tracekit._shared import stats as _stats
from tracekit.sidecar.runtime import Sidecar
from tracekit.tracing import provider


def stored_segments(moto: str, trace_ids: list[str]) -> list[dict[str, Any]]:
    client = boto3.client("xray", endpoint_url=moto, region_name="us-east-1")
    out: list[dict[str, Any]] = []
    for i in range(0, len(trace_ids), 5):
        for trace in client.batch_get_traces(TraceIds=trace_ids[i : i + 5])["Traces"]:
            out.extend(json.loads(s["Document"]) for s in trace["Segments"])
    return out


def test_aws_xray_sdk_udp_emitter_into_moto(make_sidecar: Callable[..., Sidecar], moto: str) -> None:
    from aws_xray_sdk.core.recorder import AWSXRayRecorder

    sidecar = make_sidecar(endpoint_url=moto)
    host, port = sidecar.udp.address()
    recorder = AWSXRayRecorder()
    recorder.configure(
        daemon_address=f"{host}:{port}", sampling=False, context_missing="LOG_ERROR",
        plugins=(), streaming_threshold=1000,
    )
    sent: dict[str, str] = {}
    for i in range(60):
        segment = recorder.begin_segment(f"orders-{i % 3}")
        sub = recorder.begin_subsegment("db")
        sub.put_annotation("order", i)
        recorder.end_subsegment()
        recorder.end_segment()
        sent[segment.id] = segment.trace_id
    wait_until(lambda: _stats.stats().get("sidecar.udp.received", 0) == 60)
    assert sidecar.sink.flush(10)
    got = stored_segments(moto, sorted(set(sent.values())))
    assert sorted(s["id"] for s in got) == sorted(sent)
    assert all(s["subsegments"][0]["annotations"]["order"] >= 0 for s in got)
    assert _stats.stats()["sidecar.upstream.sent"] == 60


def test_tracekit_emitter_into_moto(make_sidecar: Callable[..., Sidecar], moto: str) -> None:
    sidecar = make_sidecar(endpoint_url=moto)
    tracekit.configure(
        service="checkout", exporters=["xray"], daemon_udp=sidecar.udp.address(), sampler=ALWAYS_ON
    )
    try:
        trace_ids = []
        for i in range(20):
            with tracekit.span("GET /orders", kind=SpanKind.SERVER):
                tracekit.annotate("order", i)
                with tracekit.span("query"):
                    pass
                trace_ids.append(tracekit.current_trace_id())
        tracekit.force_flush()
    finally:
        provider.shutdown()
    wait_until(lambda: _stats.stats().get("sidecar.udp.received", 0) >= 20)
    assert sidecar.sink.flush(10)
    got = stored_segments(moto, [t for t in trace_ids if t])
    assert len({s["trace_id"] for s in got}) == 20
    assert len(got) == len({s["id"] for s in got}) == _stats.stats()["sidecar.udp.received"]
