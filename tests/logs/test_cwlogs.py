"""The CloudWatch Logs shipper against moto server, read back with GetLogEvents."""

from __future__ import annotations

import socket
import time
from typing import Any

import boto3
import pytest

from tracekit._shared import stats as _stats
from tracekit.logs.cwlogs import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    LogsShipper,
    batches,
    make_event,
)


@pytest.fixture(autouse=True)
def _reset_stats() -> None:
    _stats.reset()


def _client(moto: str) -> Any:
    return boto3.client("logs", endpoint_url=moto, region_name="us-east-1")


def _read_all(client: Any, group: str, stream: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = client.get_log_events(
            logGroupName=group, logStreamName=stream, startFromHead=True, **kwargs
        )
        events.extend(page["events"])
        if page["nextForwardToken"] == token:
            return events
        token = page["nextForwardToken"]


def _count_calls(client: Any) -> list[int]:
    calls: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(len(params["logEvents"]))

    client.meta.events.register("provide-client-params.cloudwatch-logs.PutLogEvents", record)
    return calls


def test_every_line_arrives_in_order_and_groups_are_created(moto: str) -> None:
    client = _client(moto)
    calls = _count_calls(client)
    shipper = LogsShipper("/app/web", "host-1", client=client, linger=0.05)
    base = int(time.time() * 1000) - 60_000
    # Out of order on purpose: batches must be sorted before sending (moto rejects disorder).
    lines = [(base + (i * 7919) % 25_000, f"line {(i * 7919) % 25_000}") for i in range(25_000)]
    assert all(shipper.put(message, stamp) for stamp, message in lines)
    assert shipper.flush(60)
    events = _read_all(client, "/app/web", "host-1")
    assert [e["message"] for e in events] == [f"line {i}" for i in range(25_000)]
    assert [e["timestamp"] for e in events] == [base + i for i in range(25_000)]
    assert max(calls) <= 10_000 and sum(calls) >= 25_000
    assert _stats.stats()["cwlogs.sent"] == 25_000
    shipper.close(5)


def test_emf_header_is_sent(moto: str) -> None:
    client = _client(moto)
    seen: list[tuple[str, Any]] = []

    def capture(request: Any, event_name: str, **_: Any) -> None:
        value = request.headers.get("x-amzn-logs-format")
        seen.append((event_name.rsplit(".", 1)[1], value and bytes(value).decode()))

    client.meta.events.register("before-send.cloudwatch-logs.PutLogEvents", capture)
    client.meta.events.register("before-send.cloudwatch-logs.CreateLogGroup", capture)
    shipper = LogsShipper("/emf", "s", client=client, emf=True, linger=0)
    shipper.put('{"_aws":{}}')
    assert shipper.flush(10)
    assert ("PutLogEvents", "json/emf") in seen
    assert ("CreateLogGroup", None) in seen  # only PutLogEvents carries the header
    assert _read_all(client, "/emf", "s")[0]["message"] == '{"_aws":{}}'


def test_batches_respect_bytes_and_the_24_hour_span() -> None:
    big = [make_event("x" * 10_000, 1_000 + i) for i in range(300)]  # ~3 MB
    chunks = batches(big)
    assert len(chunks) == 3
    assert all(sum(e.size for e in c) <= MAX_BATCH_BYTES for c in chunks)
    hour = 3600 * 1000
    spread = [make_event(f"e{i}", i * 6 * hour) for i in range(10)]  # 54 hours
    for chunk in batches(spread):
        assert chunk[-1].timestamp_ms - chunk[0].timestamp_ms < 24 * hour
    assert [e.message for c in batches(spread) for e in c] == [f"e{i}" for i in range(10)]


def test_oversized_and_out_of_window_events(moto: str) -> None:
    huge = make_event("é" * MAX_EVENT_BYTES)
    assert huge.size <= MAX_EVENT_BYTES and huge.message.startswith("éé")
    assert huge.size - EVENT_OVERHEAD == len(huge.message.encode())
    assert _stats.stats()["cwlogs.truncated"] == 1
    client = _client(moto)
    shipper = LogsShipper("/g", "s", client=client, linger=0)
    now = int(time.time() * 1000)
    shipper.put("ancient", now - 15 * 24 * 3600 * 1000)
    shipper.put("future", now + 3 * 3600 * 1000)
    shipper.put("fine", now)
    assert shipper.flush(10)
    assert [e["message"] for e in _read_all(client, "/g", "s")] == ["fine"]
    assert _stats.stats()["cwlogs.dropped.out_of_window"] == 2


def test_bounded_buffer_and_unreachable_endpoint_never_raise() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shipper = LogsShipper(
        "/g", "s", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
        max_buffer_bytes=3_000, retry_for=0.5, linger=5,
    )  # fmt: skip
    accepted = [shipper.put("x" * 100) for _ in range(20)]
    assert accepted.count(True) == 4  # 4 x (126 + 100 bytes held per event) fit in the 1,000 bytes
    # left by the 2,000 kept for the two copies of a batch being sent
    assert _stats.stats()["cwlogs.dropped.buffer_full"] == 16
    assert shipper.flush(20)
    assert _stats.stats()["cwlogs.dropped.retries_exhausted"] == 4
    assert shipper.put("room again")  # the buffer drained
    assert shipper.close(20)  # nothing left to fail during the next test


def test_throttling_and_5xx_are_retried(moto: str) -> None:
    from botocore.awsrequest import AWSResponse

    shipper = LogsShipper("/retry", "s", endpoint_url=moto, region="us-east-1", linger=0)
    client = shipper.client  # botocore does not retry: the shipper does, within retry_for
    failures = [3]

    class _Raw:
        def stream(self, **_: Any) -> Any:
            yield b'{"__type":"ThrottlingException","message":"slow down"}'

    def flaky(request: Any, **_: Any) -> AWSResponse | None:
        if failures[0]:
            failures[0] -= 1
            status = 400 if failures[0] % 2 else 503
            return AWSResponse(request.url, status, {}, _Raw())
        return None

    client.meta.events.register("before-send.cloudwatch-logs.PutLogEvents", flaky)
    shipper.put("survives throttling")
    assert shipper.flush(30)
    assert failures == [0], _stats.stats()
    assert "cwlogs.dropped.error" not in _stats.stats(), _stats.stats()
    assert [e["message"] for e in _read_all(client, "/retry", "s")] == ["survives throttling"]


HOUR = 3600 * 1000


def _sizes(chunks: list[list[Any]]) -> list[int]:
    return [len(chunk) for chunk in chunks]


def test_batches_at_the_exact_limits() -> None:
    assert _sizes(batches([make_event("e", 1) for _ in range(10_000)])) == [10_000]
    assert _sizes(batches([make_event("e", 1) for _ in range(10_001)])) == [10_000, 1]
    half = MAX_BATCH_BYTES // 2 - EVENT_OVERHEAD  # two of these fill a batch to the byte
    exact = [make_event("a" * half, 1), make_event("b" * half, 2)]
    assert sum(e.size for e in exact) == MAX_BATCH_BYTES and _sizes(batches(exact)) == [2]
    over = [make_event("a" * half, 1), make_event("b" * (half + 1), 2)]
    assert _sizes(batches(over)) == [1, 1]
    assert _sizes(batches([make_event("a", 0), make_event("b", 24 * HOUR - 1)])) == [2]
    assert _sizes(batches([make_event("a", 0), make_event("b", 24 * HOUR)])) == [1, 1]


def test_event_size_at_the_exact_limit() -> None:
    limit = MAX_EVENT_BYTES - EVENT_OVERHEAD  # a lone event must still fit a batch
    exact = make_event("x" * limit)
    assert exact.size == MAX_BATCH_BYTES and len(exact.message) == limit
    assert "cwlogs.truncated" not in _stats.stats()
    cut = make_event("€" * (limit // 3) + "€")  # 3-byte characters: cut between two of them
    assert cut.message == "€" * (limit // 3) and cut.size <= MAX_EVENT_BYTES
    assert _stats.stats()["cwlogs.truncated"] == 1


def test_every_call_to_cloudwatch_logs_is_within_the_limits(moto: str) -> None:
    client = _client(moto)
    calls: list[list[dict[str, Any]]] = []

    def check(params: dict[str, Any], **_: Any) -> None:
        events = params["logEvents"]
        calls.append(events)
        stamps = [e["timestamp"] for e in events]
        assert len(events) <= 10_000 and stamps == sorted(stamps)
        assert stamps[-1] - stamps[0] <= 24 * HOUR
        assert sum(len(e["message"].encode()) + 26 for e in events) <= 1_048_576

    client.meta.events.register("provide-client-params.cloudwatch-logs.PutLogEvents", check)
    shipper = LogsShipper("/limits", "s", client=client, linger=0.2)
    start = int(time.time() * 1000) - 30 * HOUR
    sent = [(start + i * 10, f"small {i:05d}") for i in range(9_999)]
    sent.append((start + 100_000, "x" * (MAX_EVENT_BYTES - EVENT_OVERHEAD)))
    sent += [(start + 25 * HOUR + i, f"late {i}") for i in range(3)]
    for stamp, message in reversed(sent):
        assert shipper.put(message, stamp)
    assert shipper.flush(60)
    got = _read_all(client, "/limits", "s")
    assert [(e["timestamp"], e["message"]) for e in got] == sent
    assert len(calls) >= 3  # the 1 MB event and the 24 h span each forced a new batch
    shipper.close(5)
