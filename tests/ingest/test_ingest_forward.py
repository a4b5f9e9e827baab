"""``--otlp-forward``: received OTLP requests go on to another OTLP endpoint (a collector, X-Ray)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from ingest_helpers import ListSink, wait_until
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from support.otlp_receiver import OtlpReceiver
from tracekit._shared import stats as _stats
from tracekit.sidecar.otlp_forward import OtlpForwarder
from tracekit.sidecar.otlp_receiver import OtlpHttpReceiver


def export_spans(rx: OtlpHttpReceiver, names: list[str]) -> list[str]:
    """Export one span per name with the real SDK exporter; returns their span ids (hex)."""
    host, port = rx.address()
    provider = TracerProvider(resource=Resource.create({"service.name": "fwd"}))
    exporter = OTLPSpanExporter(endpoint=f"http://{host}:{port}/v1/traces", timeout=5)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ids = []
    for name in names:
        with provider.get_tracer("t").start_as_current_span(name) as span:
            ids.append(f"{span.get_span_context().span_id:016x}")
    provider.shutdown()
    return ids


def test_forwarded_spans_arrive_unchanged(otlp_receiver: OtlpReceiver) -> None:
    forwarder = OtlpForwarder(otlp_receiver.traces_url)
    rx = OtlpHttpReceiver("127.0.0.1", 0, sink=None, forwarder=forwarder)
    rx.start()
    ids = export_spans(rx, ["a", "b", "c"])
    rx.stop()  # flushes the forwarder
    spans = otlp_receiver.wait_for(3)
    assert [s["span_id"] for s in spans] == ids
    assert spans[0]["resource"]["service.name"] == "fwd"
    assert not forwarder.signed
    assert "authorization" not in otlp_receiver.requests()[0].headers
    assert _stats.stats()["sidecar.otlp.forward.sent_requests"] == 3


def test_queued_requests_are_merged_into_one_post(otlp_receiver: OtlpReceiver) -> None:
    """Concatenated protobuf requests are one request holding all their resource_spans."""
    forwarder = OtlpForwarder(otlp_receiver.traces_url)
    for _ in range(3):
        forwarder.submit(_one_span_request())
    assert forwarder.flush(5)
    forwarder.close(1)
    assert [r.span_count for r in otlp_receiver.requests()] == [3]


def test_forward_and_translate_together(otlp_receiver: OtlpReceiver, sink: ListSink) -> None:
    forwarder = OtlpForwarder(otlp_receiver.traces_url)
    rx = OtlpHttpReceiver("127.0.0.1", 0, sink=sink, forwarder=forwarder)
    rx.start()
    (span_id,) = export_spans(rx, ["both"])
    rx.stop()
    assert otlp_receiver.wait_for(1)[0]["span_id"] == span_id
    assert [d["id"] for d in sink.docs()] == [span_id]


def test_json_requests_are_forwarded_as_protobuf(otlp_receiver: OtlpReceiver) -> None:
    rx = OtlpHttpReceiver("127.0.0.1", 0, sink=None, forwarder=OtlpForwarder(otlp_receiver.traces_url))
    rx.start()
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5759e988bd862e3fe1be46a994272793", "spanId": "53995c3f42cd8ad8", "name": "j",
        "startTimeUnixNano": "1", "endTimeUnixNano": "2",
    }]}]}]}
    host, port = rx.address()
    request = urllib.request.Request(
        f"http://{host}:{port}/v1/traces", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200
    rx.stop()
    (span,) = otlp_receiver.wait_for(1)
    assert span["span_id"] == "53995c3f42cd8ad8"
    assert otlp_receiver.requests()[0].content_type == "application/x-protobuf"


def test_xray_otlp_endpoint_is_signed_with_sigv4(otlp_receiver: OtlpReceiver) -> None:
    """X-Ray's OTLP endpoint wants SigV4 (service xray); the local receiver stands in for it."""
    forwarder = OtlpForwarder(otlp_receiver.traces_url, sigv4=True, region="eu-west-1")
    assert forwarder.signed
    assert OtlpForwarder("https://xray.us-east-1.amazonaws.com/v1/traces", region="us-east-1").signed
    forwarder.submit(_one_span_request())
    assert forwarder.flush(5)
    forwarder.close(1)
    headers = otlp_receiver.wait_for_requests(1)[0].headers
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/eu-west-1/xray/aws4_request" in headers["authorization"]
    assert "x-amz-date" in headers


def test_retries_until_the_collector_recovers(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.fail(503, times=2)
    forwarder = OtlpForwarder(otlp_receiver.traces_url, retry_for=10)
    forwarder.submit(_one_span_request())
    assert forwarder.flush(10)
    forwarder.close(1)
    assert len(otlp_receiver.wait_for(1)) == 1
    assert [r.status for r in otlp_receiver.requests()] == [503, 503, 200]
    assert _stats.stats()["sidecar.otlp.forward.retries"] == 2


def test_rejected_and_unreachable_batches_are_counted_as_dropped(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.fail(400)
    forwarder = OtlpForwarder(otlp_receiver.traces_url, retry_for=0.3)
    forwarder.submit(_one_span_request())
    assert forwarder.flush(5)
    otlp_receiver.down()
    forwarder.submit(_one_span_request())
    assert forwarder.flush(5)
    forwarder.close(1)
    counts = _stats.stats()
    assert counts["sidecar.otlp.forward.dropped.http_400"] == 1
    assert counts["sidecar.otlp.forward.dropped.retries_exhausted"] == 1  # after retrying "unreachable"


def test_full_forward_buffer_makes_the_receiver_answer_503(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.fail(503)
    # 800 bytes: 400 for requests (3 of 55 + 64 bytes), 400 kept for the joined bodies being sent
    forwarder = OtlpForwarder(otlp_receiver.traces_url, max_bytes=800, retry_for=30)
    rx = OtlpHttpReceiver("127.0.0.1", 0, sink=None, forwarder=forwarder)
    rx.start()
    try:
        host, port = rx.address()
        statuses = []
        for _ in range(5):
            request = urllib.request.Request(
                f"http://{host}:{port}/v1/traces", data=_one_span_request(), method="POST",
                headers={"Content-Type": "application/x-protobuf"},
            )
            try:
                statuses.append(urllib.request.urlopen(request, timeout=5).status)
            except urllib.error.HTTPError as err:
                statuses.append(err.code)
        assert 503 in statuses
    finally:
        otlp_receiver.heal()
        rx.stop()
    wait_until(lambda: otlp_receiver.spans(), what="buffered spans delivered after recovery")


def test_bad_forward_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="--otlp-forward 'ftp://x' is not valid"):
        OtlpForwarder("ftp://x")


def _one_span_request() -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="x", start_time_unix_nano=1, end_time_unix_nano=2
    )
    return bytes(request.SerializeToString())
