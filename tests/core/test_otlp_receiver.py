"""The test OTLP receiver against the real OpenTelemetry SDK exporters (HTTP and gRPC)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from support.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rx:
        yield rx


def _work() -> Sequence[ReadableSpan]:
    """A server span with a client child carrying attributes, an event and an error status."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.receiver", "1.2")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.status_code", 500)
        with tracer.start_as_current_span("db", kind=SpanKind.CLIENT) as child:
            child.set_attribute("tags", ["a", "b"])
            child.set_attribute("ratio", 0.5)
            child.set_attribute("ok", False)
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()
    return memory.get_finished_spans()


def _check_decoded(rx: OtlpReceiver, sent: Sequence[ReadableSpan]) -> None:
    got = {s["name"]: s for s in rx.wait_for(2)}
    child, server = sent
    assert got["db"]["trace_id"] == f"{child.context.trace_id:032x}"
    assert got["db"]["span_id"] == f"{child.context.span_id:016x}"
    assert got["db"]["parent_span_id"] == f"{server.context.span_id:016x}"
    assert got["GET /cart"]["parent_span_id"] is None
    assert got["GET /cart"]["kind"] == "SERVER"
    assert got["db"]["kind"] == "CLIENT"
    assert got["GET /cart"]["attributes"] == {"http.status_code": 500}
    assert got["db"]["attributes"] == {"tags": ["a", "b"], "ratio": 0.5, "ok": False}
    assert [(e["name"], e["attributes"]) for e in got["db"]["events"]] == [("retry", {"attempt": 2})]
    assert got["db"]["status"] == {"code": "ERROR", "message": "boom"}
    assert got["db"]["resource"]["service.name"] == "checkout"
    assert got["db"]["scope"] == {"name": "tests.receiver", "version": "1.2"}
    assert got["db"]["end_time_unix_nano"] >= got["db"]["start_time_unix_nano"] > 0


@pytest.mark.parametrize(
    ("compression", "encoding"),
    [(Compression.NoCompression, "identity"), (Compression.Gzip, "gzip"), (Compression.Deflate, "deflate")],
)
def test_http_exporter_spans_are_decoded(
    receiver: OtlpReceiver, compression: Compression, encoding: str
) -> None:
    sent = _work()
    exporter = HttpExporter(endpoint=receiver.traces_url, compression=compression, headers={"x-tenant": "t1"})
    assert exporter.export(sent) == SpanExportResult.SUCCESS
    _check_decoded(receiver, sent)
    (request,) = receiver.requests()
    assert (request.transport, request.encoding, request.status) == ("http", encoding, 200)
    assert request.content_type == "application/x-protobuf"
    assert request.headers["x-tenant"] == "t1"
    assert request.span_count == 2


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_grpc_exporter_spans_are_decoded(receiver: OtlpReceiver, compression: grpc.Compression) -> None:
    sent = _work()
    exporter = GrpcExporter(
        endpoint=receiver.grpc_endpoint, compression=compression, headers=(("x-tenant", "t1"),)
    )
    assert exporter.export(sent) == SpanExportResult.SUCCESS
    exporter.shutdown()
    _check_decoded(receiver, sent)
    (request,) = receiver.requests()
    assert (request.transport, request.status, request.headers["x-tenant"]) == ("grpc", 200, "t1")


def test_endpoint_is_the_base_for_otel_exporter_otlp_endpoint(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    assert HttpExporter().export(_work()) == SpanExportResult.SUCCESS
    assert len(receiver.wait_for(2)) == 2


def _post(url: str, body: bytes, content_type: str) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers["Content-Type"]


def test_json_body_with_hex_ids(receiver: OtlpReceiver) -> None:
    sent = _work()
    data = json_format.MessageToDict(encode_spans(sent))
    for rs in data["resourceSpans"]:
        for span in rs["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:  # OTLP/JSON writes ids as hex, not protobuf's base64
                    span[key] = base64.b64decode(span[key]).hex()
    status, body, content_type = _post(receiver.traces_url, json.dumps(data).encode(), "application/json")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {}
    _check_decoded(receiver, sent)


def test_malformed_body_is_400_and_other_paths_404(receiver: OtlpReceiver) -> None:
    assert _post(receiver.traces_url, b"\xff\x00garbage", "application/x-protobuf")[0] == 400
    assert _post(receiver.traces_url, b"{not json", "application/json")[0] == 400
    assert _post(receiver.endpoint + "/v1/metrics", b"", "application/x-protobuf")[0] == 404
    assert [r.status for r in receiver.requests()] == [400, 400]
    assert receiver.spans() == []


def test_fail_once_with_retry_after_then_accept(receiver: OtlpReceiver) -> None:
    receiver.fail(503, times=1, retry_after=0)
    exporter = HttpExporter(endpoint=receiver.traces_url, timeout=5)
    assert exporter.export(_work()) == SpanExportResult.SUCCESS
    assert [r.status for r in receiver.requests()] == [503, 200]
    assert len(receiver.spans()) == 2


def test_fail_until_healed(receiver: OtlpReceiver) -> None:
    receiver.fail(400)
    http = HttpExporter(endpoint=receiver.traces_url, timeout=2)
    rpc = GrpcExporter(endpoint=receiver.grpc_endpoint, timeout=2)
    assert http.export(_work()) == SpanExportResult.FAILURE
    assert rpc.export(_work()) == SpanExportResult.FAILURE
    assert [(r.transport, r.status) for r in receiver.requests()] == [("http", 400), ("grpc", 400)]
    assert receiver.spans() == []
    receiver.heal()
    assert http.export(_work()) == SpanExportResult.SUCCESS
    assert rpc.export(_work()) == SpanExportResult.SUCCESS
    rpc.shutdown()
    assert len(receiver.wait_for(4)) == 4


def test_down_refuses_connections_and_up_reuses_the_ports(receiver: OtlpReceiver) -> None:
    endpoint, grpc_endpoint = receiver.traces_url, receiver.grpc_endpoint
    receiver.down()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(endpoint, data=b"", timeout=2)
    assert HttpExporter(endpoint=endpoint, timeout=0.5).export(_work()) == SpanExportResult.FAILURE
    receiver.up()
    assert (receiver.traces_url, receiver.grpc_endpoint) == (endpoint, grpc_endpoint)
    assert HttpExporter(endpoint=endpoint).export(_work()) == SpanExportResult.SUCCESS
    assert len(receiver.wait_for(2)) == 2


def test_wait_for_says_what_arrived(receiver: OtlpReceiver) -> None:
    HttpExporter(endpoint=receiver.traces_url).export(_work())
    with pytest.raises(AssertionError, match=r"expected 3 spans.*GET /cart"):
        receiver.wait_for(3, timeout=0.2)
    receiver.clear()
    assert receiver.spans() == [] and receiver.requests() == []


def test_fail_rejects_unmapped_status(receiver: OtlpReceiver) -> None:
    with pytest.raises(ValueError, match="418"):
        receiver.fail(418)


def test_the_sigv4_check_refuses_what_aws_would() -> None:
    """The receiver's signature check can fail: a changed body, an unknown key or no signature."""
    from botocore.credentials import Credentials

    from tracekit._shared.sigv4 import SignedHTTP

    body = trace_service_pb2.ExportTraceServiceRequest().SerializeToString()
    with OtlpReceiver(grpc_enabled=False, sigv4={"AKIDRECEIVERTEST0001": "right"}) as rx:

        def post(secret: str | None, sent: bytes, key: str = "AKIDRECEIVERTEST0001") -> int:
            headers = {"Content-Type": "application/x-protobuf"}
            if secret is not None:
                signer = SignedHTTP("xray", "eu-west-1", credentials=Credentials(key, secret))
                headers = signer.sign(rx.traces_url, body, headers)
            request = urllib.request.Request(rx.traces_url, data=sent, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as err:
                return err.code

        assert post("right", body) == 200
        assert post("right", body + b"\x00") == 403
        assert post("wrong", body) == 403
        assert post("right", body, key="AKIDRECEIVERUNKNOWN1") == 403
        assert post(None, body) == 403
    assert [r.sigv4 for r in rx.requests()] == ["valid", "mismatch", "mismatch", "unknown_key", "missing"]
