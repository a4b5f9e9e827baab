"""One trace, two outputs: X-Ray documents (UDP and PutTraceSegments on moto) and OTLP, same ids."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

import tracekit
from support.xray_schema import validate_document
from tracekit._shared import stats as _stats
from tracekit.tracing import provider
from tracekit.xray.tree import flatten


@tracekit.trace(name="checkout")
def workload() -> str | None:
    with tracekit.span("reserve"), tracekit.span("db"):
        tracekit.annotate("table", "stock")
    with tracekit.span("charge"):
        pass
    return tracekit.current_trace_id()


def xray_client(url: str) -> Any:
    return boto3.client("xray", endpoint_url=url, region_name="us-east-1")


def read_back(url: str, trace_id: str) -> dict[str, dict[str, Any]]:
    traces = xray_client(url).batch_get_traces(TraceIds=[trace_id])["Traces"]
    assert [t["Id"] for t in traces] == [trace_id]
    documents = [json.loads(s["Document"]) for s in traces[0]["Segments"]]
    return {node["id"]: node for node in flatten(documents)}


def test_udp_documents_are_accepted_by_put_trace_segments(traced: Any, moto: str) -> None:
    trace_id = workload()
    assert tracekit.force_flush()
    docs = traced.wait_for(1)
    for doc in docs:
        validate_document(doc)
    result = xray_client(moto).put_trace_segments(TraceSegmentDocuments=[json.dumps(d) for d in docs])
    assert result["UnprocessedTraceSegments"] == []
    assert trace_id is not None
    nodes = read_back(moto, trace_id)
    by_name = {n["name"]: n for n in nodes.values()}
    assert set(by_name) == {"core-test", "reserve", "db", "charge"}
    assert by_name["db"]["parent_id"] == by_name["reserve"]["id"]
    assert by_name["charge"]["parent_id"] == by_name["core-test"]["id"]


def test_direct_put_trace_segments_mode_round_trips_through_moto(moto: str) -> None:
    _stats.reset()
    tracekit.configure(service="direct", exporters=["xray"], xray_direct=True, endpoint_url=moto,
                       region="us-east-1", sampler=ALWAYS_ON)
    try:
        trace_ids = [workload() for _ in range(60)]
        assert tracekit.force_flush(timeout=10)
    finally:
        provider.shutdown()
    counts = _stats.stats()
    assert not any("unprocessed" in k or "dropped" in k for k in counts), counts
    for trace_id in (trace_ids[0], trace_ids[-1]):
        assert trace_id is not None
        nodes = read_back(moto, trace_id)
        by_name = {n["name"]: n for n in nodes.values()}
        assert by_name["db"]["parent_id"] == by_name["reserve"]["id"]
        assert by_name["direct"]["trace_id"] == trace_id


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_otlp_spans_carry_the_same_ids_as_xray_documents(
    xray_daemon: Any, otlp_receiver: Any, protocol: str
) -> None:
    endpoint = otlp_receiver.traces_url if protocol == "http/protobuf" else otlp_receiver.grpc_endpoint
    tracekit.configure(service="both", exporters=["xray", "otlp"], otlp_protocol=protocol,
                       otlp_endpoint=endpoint, daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=ALWAYS_ON)
    try:
        trace_id = workload()
        assert tracekit.force_flush()
    finally:
        provider.shutdown()
    spans = otlp_receiver.wait_for(4)
    nodes = flatten(xray_daemon.wait_for(1))
    assert {s["span_id"] for s in spans} == {n["id"] for n in nodes}
    assert trace_id is not None
    assert {s["trace_id"] for s in spans} == {trace_id.replace("-", "")[1:]}
    otlp_parent = {s["span_id"]: s["parent_span_id"] for s in spans}
    for node in nodes:
        assert otlp_parent[node["id"]] == node.get("parent_id")


@pytest.mark.parametrize(
    ("header", "root_sampler", "emitted", "response_flag"),
    [
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
         ALWAYS_OFF, True, "1"),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
         ALWAYS_ON, False, "0"),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?",
         ALWAYS_ON, True, "1"),
        ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?",
         ALWAYS_OFF, False, "0"),
    ],
)
def test_inbound_decision_is_honoured(
    xray_daemon: Any, header: str, root_sampler: Any, emitted: bool, response_flag: str
) -> None:
    tracekit.configure(exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=root_sampler)
    try:
        context = propagate.extract({"X-Amzn-Trace-Id": header})
        tracer = provider.get_tracer()
        assert tracer is not None
        with tracer.start_as_current_span("handler", context=context):
            outgoing = tracekit.current_trace_header()
        assert tracekit.force_flush()
    finally:
        provider.shutdown()
    assert outgoing is not None and outgoing.endswith(f"Sampled={response_flag}")
    assert outgoing.startswith("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=")
    if emitted:
        (doc,) = xray_daemon.wait_for(1)
        assert doc["parent_id"] == "53995c3f42cd8ad8"
        assert doc["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    else:
        with pytest.raises(AssertionError):
            xray_daemon.wait_for(1, timeout=0.3)


def test_w3c_traceparent_continues_the_trace(xray_daemon: Any) -> None:
    tracekit.configure(exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=ALWAYS_OFF)
    try:
        context = propagate.extract(
            {"traceparent": "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
             "tracestate": "vendor=1"})
        tracer = provider.get_tracer()
        assert tracer is not None
        with tracer.start_as_current_span("handler", context=context):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        assert tracekit.force_flush()
    finally:
        provider.shutdown()
    (doc,) = xray_daemon.wait_for(1)
    assert doc["parent_id"] == "53995c3f42cd8ad8"
    assert carrier["tracestate"] == "vendor=1"
    assert carrier["traceparent"].startswith("00-5759e988bd862e3fe1be46a994272793-")
    assert carrier["X-Amzn-Trace-Id"].startswith("Root=1-5759e988-bd862e3fe1be46a994272793;")


def test_default_sampler_uses_origin_and_local_rules_from_the_environment(
    monkeypatch: Any, tmp_path: Any
) -> None:
    """With no daemon reachable, the X-Ray sampler falls back to TRACEKIT_SAMPLING_RULES."""
    from tracekit.sampling.sampler import XRaySampler

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({
        "version": 2,
        "rules": [{"description": "no health", "host": "*", "http_method": "GET",
                   "url_path": "/health", "fixed_target": 0, "rate": 0.0}],
        "default": {"fixed_target": 1, "rate": 0.05},
    }))
    monkeypatch.setenv("TRACEKIT_SAMPLING_RULES", str(rules))
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "cloud.platform=aws_ecs,aws.ecs.launchtype=FARGATE")
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    built = tracekit.configure(service="svc", exporters=[])
    try:
        assert built is not None
        sampler = built.sampler.root  # type: ignore[attr-defined]
        assert isinstance(sampler, XRaySampler)
        assert sampler.origin == "AWS::ECS::Fargate"
        tracer = provider.get_tracer()
        assert tracer is not None
        span = tracer.start_span("GET /health", attributes={"http.request.method": "GET",
                                                             "url.path": "/health"})
        assert not span.get_span_context().trace_flags.sampled
        span.end()
    finally:
        provider.shutdown()


def test_start_attributes_survive_a_parent_based_decision(xray_daemon: Any) -> None:
    tracekit.configure(exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=ALWAYS_ON)
    try:
        tracer = provider.get_tracer()
        assert tracer is not None
        with tracer.start_as_current_span("parent"):
            child = tracer.start_span("child", attributes={"peer.service": "payments"})
            child.end()
        assert tracekit.force_flush()
    finally:
        provider.shutdown()
    (doc,) = xray_daemon.wait_for(1)
    assert [sub["name"] for sub in doc["subsegments"]] == ["payments"]


def test_sensitive_attributes_are_redacted_in_otlp_too(otlp_receiver: Any) -> None:
    tracekit.configure(exporters=["otlp"], otlp_endpoint=otlp_receiver.traces_url,
                       sampler=ALWAYS_ON)
    try:
        tracer = provider.get_tracer()
        assert tracer is not None
        with tracer.start_as_current_span("login") as span:
            span.set_attribute("http.request.header.authorization", "Bearer abc")
            span.set_attribute("user", "alice")
        assert tracekit.force_flush()
    finally:
        provider.shutdown()
    (received,) = otlp_receiver.wait_for(1)
    assert received["attributes"] == {"http.request.header.authorization": "[REDACTED]",
                                      "user": "alice"}


def test_redact_survives_cycles_and_deep_nesting() -> None:
    from tracekit._shared.redaction import redact

    loop: dict[str, Any] = {"password": "x"}
    loop["self"] = loop
    result = redact(loop)
    assert isinstance(result, dict) and result["password"] == "[REDACTED]"
    assert "[TOO DEEP]" in json.dumps(result)


def test_start_attributes_survive_the_xray_sampler(xray_daemon: Any) -> None:
    from tracekit.sampling.sampler import XRaySampler

    tracekit.configure(exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=XRaySampler(service_name="svc", background=False))
    try:
        tracer = provider.get_tracer()
        assert tracer is not None
        tracer.start_span("root", attributes={"http.request.method": "GET"}).end()
        assert tracekit.force_flush()
    finally:
        provider.shutdown()
    (doc,) = xray_daemon.wait_for(1)
    assert doc["http"]["request"]["method"] == "GET"
