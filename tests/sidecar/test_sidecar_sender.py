"""SegmentSender against moto (real X-Ray API shapes) and the stub (faults moto cannot produce)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import boto3
import pytest
from sidecar_helpers import XRayStub, document, wait_until

from tracekit._shared import stats as _stats
from tracekit.xray.sender import SegmentSender, request_body


@pytest.fixture(autouse=True)
def _clean_stats() -> Iterator[None]:
    _stats.reset()
    yield


def segment(trace_id: str | None = None) -> str:
    now = time.time()
    trace_id = trace_id or f"1-{int(now):08x}-{secrets.token_hex(12)}"
    return json.dumps({
        "name": "checkout", "id": secrets.token_hex(8), "trace_id": trace_id,
        "start_time": now, "end_time": now + 0.01,
    })


def read_back(moto: str, trace_ids: list[str]) -> list[dict[str, object]]:
    client = boto3.client("xray", endpoint_url=moto, region_name="us-east-1")
    segments = []
    for i in range(0, len(trace_ids), 5):
        for trace in client.batch_get_traces(TraceIds=trace_ids[i : i + 5])["Traces"]:
            segments.extend(json.loads(s["Document"]) for s in trace["Segments"])
    return segments


def test_every_document_arrives_once_in_moto(moto: str) -> None:
    sender = SegmentSender("us-east-1", moto, workers=3)
    docs = [segment() for _ in range(230)]
    assert all(sender.submit(d) for d in docs)
    assert sender.flush(15)
    sender.close(2)
    got = read_back(moto, [json.loads(d)["trace_id"] for d in docs])
    assert sorted(s["id"] for s in got) == sorted(json.loads(d)["id"] for d in docs)
    assert _stats.stats()["xray_api.sent"] == 230
    assert _stats.stats()["xray_api.batches"] >= 5  # 230 documents, at most 50 per call


def test_documents_of_every_kind_arrive_intact_in_moto(moto: str) -> None:
    """The body escapes printable-ASCII batches itself and the rest through the JSON encoder."""
    ascii_docs = [segment().replace('"checkout"', r'"say \"hi\" C:\\tmp"').encode() for _ in range(3)]
    other = [
        segment().replace('"checkout"', '"caf\u00e9 \u20ac"').encode(),  # non-ASCII UTF-8
        segment().replace(", ", ",\n\t").encode(),  # whitespace control characters
        segment().replace('"checkout"', '"del\x7f"'),  # str, with DEL
    ]
    docs: list[str | bytes] = [*ascii_docs, *other]
    for batch in ([], ascii_docs, docs, [b'{"bad": "\xff"}']):
        assert request_body(batch) == json.dumps(
            {"TraceSegmentDocuments": [d if isinstance(d, str) else d.decode("utf-8", "replace")
                                       for d in batch]}, separators=(",", ":")).encode()
    sender = SegmentSender("us-east-1", moto)
    assert all(sender.submit(d) for d in docs)
    assert sender.flush(10)
    sender.close(2)
    sent = [json.loads(d) for d in docs]
    got = read_back(moto, [str(d["trace_id"]) for d in sent])
    assert sorted(got, key=lambda s: str(s["id"])) == sorted(sent, key=lambda s: str(s["id"]))
    assert _stats.stats()["xray_api.sent"] == 6


def test_unprocessed_documents_are_counted_by_error_code(moto: str) -> None:
    sender = SegmentSender("us-east-1", moto)
    sender.submit(segment())
    sender.submit(b'{"name": "no ids"}')
    assert sender.flush(10)
    counts = _stats.stats()
    assert counts["xray_api.sent"] == 1
    assert sum(v for k, v in counts.items() if k.startswith("xray_api.unprocessed.")) == 1


def test_batches_hold_at_most_50(stub: XRayStub) -> None:
    sender = SegmentSender("us-east-1", stub.url, workers=1, batch_timeout=5)
    for i in range(120):
        sender.submit(document(i))
    assert sender.flush(10)
    assert stub.requests == 3 and len(stub.ids) == 120


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [(400, "ThrottledException", "throttled"), (429, "TooManyRequestsException", "throttled"),
     (500, "InternalFailure", "server_error"), (503, "ServiceUnavailable", "server_error")],
)
def test_throttling_and_5xx_are_retried(stub: XRayStub, status: int, error: str, reason: str) -> None:
    stub.fail_next(3, status, error)
    sender = SegmentSender("us-east-1", stub.url, workers=1, max_backoff=0.05)
    for i in range(10):
        sender.submit(document(i))
    assert sender.flush(10)
    assert len(stub.ids) == 10 and stub.duplicates == 0
    assert _stats.stats()[f"xray_api.retries.{reason}"] == 3


def test_other_4xx_are_not_retried_and_are_counted(stub: XRayStub) -> None:
    stub.fail_next(1, 400, "InvalidRequestException")
    sender = SegmentSender("us-east-1", stub.url, workers=1)
    for i in range(7):
        sender.submit(document(i))
    assert sender.flush(10)
    assert stub.requests == 1 and not stub.ids
    assert _stats.stats()["xray_api.dropped.rejected"] == 7


def test_upstream_down_then_back_delivers_the_buffer(stub: XRayStub) -> None:
    stub.stop()
    sender = SegmentSender("us-east-1", stub.url, workers=2, max_backoff=0.1, batch_timeout=0.05)
    for i in range(300):
        assert sender.submit(document(i))
    wait_until(lambda: _stats.stats().get("xray_api.retries.connection", 0) >= 4)
    assert sender.last_error and "Connection" in sender.last_error
    stub.start()
    assert sender.flush(10)
    assert len(stub.ids) == 300 and stub.duplicates == 0
    assert not any(k.startswith("xray_api.dropped") for k in _stats.stats())


def test_memory_bound_holds_and_drops_are_counted(stub: XRayStub) -> None:
    stub.stop()
    sender = SegmentSender("us-east-1", stub.url, max_buffer_bytes=50_000, max_backoff=0.1)
    accepted = sum(sender.submit(document(i)) for i in range(200))
    assert sender.buffered_bytes <= 50_000
    assert 0 < accepted < 200
    assert _stats.stats()["xray_api.dropped.buffer_full"] == 200 - accepted
    stub.start()
    assert sender.flush(10)
    assert len(stub.ids) == accepted


def test_slow_upstream_never_blocks_submit(stub: XRayStub) -> None:
    stub.delay = 0.3
    sender = SegmentSender("us-east-1", stub.url, workers=4, batch_timeout=0.05)
    started = time.perf_counter()
    for i in range(400):
        sender.submit(document(i))
    assert time.perf_counter() - started < 0.2
    assert sender.flush(10)
    assert len(stub.ids) == 400


def test_close_gives_up_at_the_deadline_and_counts_the_rest(stub: XRayStub) -> None:
    stub.stop()
    sender = SegmentSender("us-east-1", stub.url, workers=2, max_backoff=0.2)
    for i in range(120):
        sender.submit(document(i))
    started = time.monotonic()
    sender.close(0.5)
    assert time.monotonic() - started < 1.5
    assert _stats.stats()["xray_api.dropped.shutdown"] == 120
    assert not sender.submit(document(999))
    assert _stats.stats()["xray_api.dropped.closed"] == 1


def test_missing_region_is_counted_not_raised(stub: XRayStub, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    sender = SegmentSender(None, stub.url, workers=1)
    sender.submit(document(1))
    assert sender.flush(5)
    assert _stats.stats()["xray_api.dropped.no_region"] == 1

