"""The sidecar's OTLP/HTTP receiver, with the real OpenTelemetry SDK exporter as the client."""

from __future__ import annotations

import gzip
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from ingest_helpers import ListSink, wait_until
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from support.xray_schema import validate_document
from tracekit._shared import stats as _stats
from tracekit.sidecar.otlp_receiver import OtlpHttpReceiver
from tracekit.xray.segments import to_document
from tracekit.xray.sender import SegmentSender

PROTOBUF = "application/x-protobuf"


@pytest.fixture
def receiver(sink: ListSink) -> Iterator[OtlpHttpReceiver]:
    rx = OtlpHttpReceiver("127.0.0.1", 0, sink=sink)
    rx.start()
    yield rx
    rx.stop()


def url(rx: OtlpHttpReceiver) -> str:
    host, port = rx.address()
    return f"http://{host}:{port}/v1/traces"


def make_provider(
    endpoint: str, compression: Compression = Compression.Gzip
) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A real SDK pipeline exporting over OTLP/HTTP, plus an in-memory copy of every span."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    exporter = OTLPSpanExporter(endpoint=endpoint, compression=compression, timeout=5)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, memory


def record_request(provider: TracerProvider) -> None:
    """A server span with an HTTP client call that fails: exercises http, cause and nesting."""
    tracer = provider.get_tracer("shop", "1.0")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as server:
        server.set_attribute("http.method", "GET")
        server.set_attribute("http.status_code", 200)
        server.set_attribute("tags", ["a", "b"])
        with tracer.start_as_current_span("call stock", kind=SpanKind.CLIENT) as client:
            client.set_attribute("http.url", "http://stock.internal/items?id=1")
            client.set_attribute("http.status_code", 503)
            client.record_exception(RuntimeError("stock down"))
            client.set_status(Status(StatusCode.ERROR, "stock down"))


def without_exception_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """The translator gives each recorded exception a fresh random id; compare everything else."""
    doc = json.loads(json.dumps(doc))
    for exc in doc.get("cause", {}).get("exceptions", []):
        exc.pop("id")
    return doc


def post(target: str, body: bytes, content_type: str = PROTOBUF, **headers: str) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(
        target, data=body, method="POST", headers={"Content-Type": content_type, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def test_real_exporter_spans_become_the_same_documents_as_in_process(
    receiver: OtlpHttpReceiver, sink: ListSink
) -> None:
    provider, memory = make_provider(url(receiver))
    record_request(provider)
    provider.shutdown()
    received = sink.docs()
    expected = [to_document(span) for span in memory.get_finished_spans()]
    assert len(received) == 2
    by_id = {doc["id"]: doc for doc in received}
    for doc in expected:
        assert without_exception_ids(by_id[doc["id"]]) == without_exception_ids(doc)
        validate_document(by_id[doc["id"]])
    client, server = expected
    assert server["name"] == "checkout" and "parent_id" not in server
    assert client["type"] == "subsegment" and client["parent_id"] == server["id"]
    assert client["fault"] is True and client["cause"]["exceptions"][0]["message"] == "stock down"
    assert _stats.stats()["sidecar.otlp.spans.received"] == 2


def test_uncompressed_protobuf_is_accepted_too(receiver: OtlpHttpReceiver, sink: ListSink) -> None:
    provider, _ = make_provider(url(receiver), Compression.NoCompression)
    record_request(provider)
    provider.shutdown()
    assert len(sink.documents) == 2


def test_spans_reach_xray_through_the_sender(moto: str) -> None:
    """OTel SDK -> OTLP -> receiver -> SegmentSender -> PutTraceSegments (moto) -> BatchGetTraces."""
    sender = SegmentSender("us-east-1", moto, batch_timeout=0.05)
    rx = OtlpHttpReceiver("127.0.0.1", 0, sink=sender)
    rx.start()
    try:
        provider, memory = make_provider(url(rx))
        record_request(provider)
        provider.shutdown()
        assert sender.flush(10)
    finally:
        rx.stop()
        sender.close(5)
    spans = memory.get_finished_spans()
    trace_id = to_document(spans[0])["trace_id"]
    xray = boto3.client("xray", endpoint_url=moto, region_name="us-east-1")
    traces = xray.batch_get_traces(TraceIds=[trace_id])["Traces"]
    ids = sorted(json.loads(seg["Document"])["id"] for seg in traces[0]["Segments"])
    assert ids == sorted(to_document(span)["id"] for span in spans)


def test_otlp_json_with_hex_ids(receiver: OtlpHttpReceiver, sink: ListSink) -> None:
    body = {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "5759e988bd862e3fe1be46a994272793",
                "spanId": "53995c3f42cd8ad8",
                "name": "GET /",
                "kind": 2,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000500000000",
                "attributes": [{"key": "http.status_code", "value": {"intValue": "404"}}],
                "status": {"code": 2},
                "someFutureField": True,
            }]}],
        }]
    }
    status, payload, headers = post(url(receiver), json.dumps(body).encode(), "application/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(payload) == {}
    (doc,) = sink.docs()
    assert doc["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert doc["id"] == "53995c3f42cd8ad8" and doc["name"] == "api"
    assert doc["error"] is True and doc["http"]["response"]["status"] == 404
    assert doc["end_time"] - doc["start_time"] == pytest.approx(0.5)


def request_with_ids(*span_ids: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i, span_id in enumerate(span_ids):
        spans.add(trace_id=bytes.fromhex("5759e988bd862e3fe1be46a994272793"), span_id=span_id,
                  name=f"s{i}", start_time_unix_nano=1, end_time_unix_nano=2)
    return request


def test_invalid_span_is_rejected_alone_with_partial_success(
    receiver: OtlpHttpReceiver, sink: ListSink
) -> None:
    body = request_with_ids(b"\x01" * 8, b"\x00" * 8, b"\x02" * 8).SerializeToString()
    status, payload, _ = post(url(receiver), body)
    assert status == 200
    response = ExportTraceServiceResponse.FromString(payload)
    assert response.partial_success.rejected_spans == 1
    assert "spans[1]: spanId '0000000000000000' is not valid" in response.partial_success.error_message
    assert sorted(d["name"] for d in sink.docs()) == ["s0", "s2"]
    assert _stats.stats()["sidecar.otlp.spans.rejected.invalid_span"] == 1


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status", "message"),
    [
        (b"\xff\xff\xff", PROTOBUF, "", 400, "not an OTLP ExportTraceServiceRequest (protobuf)"),
        (b"{not json", "application/json", "", 400, "(JSON)"),
        (b"[]", "application/json", "", 400, "expected an object with resourceSpans"),
        (b"\x1f\x8b garbage", PROTOBUF, "gzip", 400, "not valid gzip"),
        (b"abc", PROTOBUF, "br", 400, "Content-Encoding 'br' is not supported"),
        (b"abc", "text/plain", "", 415, "expected application/x-protobuf or application/json"),
        (gzip.compress(b"\0" * (9 * 1024 * 1024)), PROTOBUF, "gzip", 413, "inflates past"),
    ],
)
def test_bad_requests_get_a_clear_status(
    receiver: OtlpHttpReceiver, sink: ListSink, body: bytes, content_type: str, encoding: str,
    status: int, message: str,
) -> None:
    from google.rpc.status_pb2 import Status as RpcStatus

    headers = {"Content-Encoding": encoding} if encoding else {}
    got, payload, reply_headers = post(url(receiver), body, content_type, **headers)
    assert got == status
    if reply_headers["Content-Type"] == "application/json":
        assert message in json.loads(payload)["message"]
    else:
        assert message in RpcStatus.FromString(payload).message
    assert sink.documents == []


def test_wrong_path_method_and_oversized_body(receiver: OtlpHttpReceiver) -> None:
    host, port = receiver.address()
    assert post(f"http://{host}:{port}/v1/metrics", b"")[0] == 404
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url(receiver), timeout=5)
    assert err.value.code == 405
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.putrequest("POST", "/v1/traces")
    conn.putheader("Content-Type", PROTOBUF)
    conn.putheader("Content-Length", str(8 * 1024 * 1024 + 1))
    conn.endheaders()  # the receiver answers from the header, without reading 8 MB
    assert conn.getresponse().status == 413
    conn.close()


def test_full_sink_answers_503_so_the_exporter_retries(sink: ListSink) -> None:
    sink.capacity = 0
    rx = OtlpHttpReceiver("127.0.0.1", 0, sink=sink)
    rx.start()
    try:
        status, _, headers = post(url(rx), request_with_ids(b"\x01" * 8).SerializeToString())
        assert status == 503 and headers["Retry-After"] == "1"
        sink.capacity = 1
        status, payload, _ = post(url(rx), request_with_ids(b"\x01" * 8, b"\x02" * 8).SerializeToString())
        assert status == 200
        assert ExportTraceServiceResponse.FromString(payload).partial_success.rejected_spans == 1
    finally:
        rx.stop()
    assert _stats.stats()["sidecar.otlp.spans.rejected.buffer_full"] == 2


class ExplodingSink(ListSink):
    def submit(self, document: bytes) -> bool:
        raise RuntimeError("disk on fire")


def test_a_failing_sink_costs_the_spans_not_the_receiver() -> None:
    rx = OtlpHttpReceiver("127.0.0.1", 0, sink=ExplodingSink())
    rx.start()
    try:
        status, _, _ = post(url(rx), request_with_ids(b"\x01" * 8).SerializeToString())
        assert status == 503  # every span refused: the client keeps them and retries
        assert _stats.stats()["errors.sidecar.otlp.sink"] == 1
        status, _, _ = post(url(rx), b"\xff")
        assert status == 400  # still serving
    finally:
        rx.stop()


def test_translation_failure_is_counted(monkeypatch: pytest.MonkeyPatch, receiver: OtlpHttpReceiver) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr("tracekit.xray.segments.to_document", broken)
    status, payload, _ = post(url(receiver), request_with_ids(b"\x01" * 8).SerializeToString())
    assert status == 200
    assert ExportTraceServiceResponse.FromString(payload).partial_success.rejected_spans == 1
    assert _stats.stats()["sidecar.otlp.spans.rejected.untranslatable"] == 1


def test_connection_limit_is_enforced(sink: ListSink) -> None:
    import socket

    rx = OtlpHttpReceiver("127.0.0.1", 0, sink=sink, max_connections=1)
    rx.start()
    marks: list[bool] = []  # the connection's waiting-for-headers marks, in order
    mark = rx._server.waiting

    def spy(conn: socket.socket, waiting: bool) -> None:
        marks.append(waiting)
        mark(conn, waiting)

    rx._server.waiting = spy  # type: ignore[method-assign]
    try:
        idle = socket.create_connection(rx.address())  # busy reading a body: not evictable
        idle.sendall(b"POST /v1/traces HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")
        # headers read (marked waiting, then not): now it reads the body, which never completes
        wait_until(lambda: marks[:2] == [True, False], what="the headers to be read")
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(urllib.request.Request(url(rx), data=b"", method="POST"), timeout=5)
        # on a loaded machine the client can give up before the server gets to refuse it
        rejected = "sidecar.otlp.requests.rejected.too_many_connections"
        wait_until(lambda: _stats.stats().get(rejected, 0) >= 1, what="the refusal to be counted")
        idle.close()
        wait_until(lambda: _try_post(url(rx)) == 200, what="the slot to free up")
    finally:
        rx.stop()


def _try_post(target: str) -> int:
    try:
        return post(target, request_with_ids(b"\x01" * 8).SerializeToString())[0]
    except (urllib.error.URLError, ConnectionError):
        return 0
