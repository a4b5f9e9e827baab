"""Outputs against real peers: TCP/UDP sockets, a file, moto's CloudWatch, Flask and FastAPI."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from emf_helpers import assert_valid_emf
from prometheus_client import CollectorRegistry

import tracekit.metrics as metrics
from tracekit._shared import stats as _stats
from tracekit.metrics.cloudwatch import PutMetricDataOutput, split_by_size
from tracekit.metrics.prometheus import PrometheusOutput, mount_fastapi, mount_flask


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class LineServer:
    """A TCP server collecting newline-delimited lines, standing in for the CloudWatch agent."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, conn.makefile("r", encoding="utf-8") as lines:
            try:
                self.lines.extend(line.rstrip("\n") for line in lines)
            except OSError:
                return

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread, freeing the port
        self.sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):  # a reader may have closed it already
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture(autouse=True)
def _unconfigure() -> Iterator[None]:
    _stats.reset()
    yield
    metrics.shutdown()


def test_agent_over_tcp_with_reconnect() -> None:
    server = LineServer()
    endpoint = f"tcp://127.0.0.1:{server.port}"
    metrics.configure("Agent/Test", env={"AWS_EMF_AGENT_ENDPOINT": endpoint}, flush_interval=0)
    metrics.count("first")
    assert metrics.flush(5.0)
    assert _wait(lambda: len(server.lines) == 1)
    assert_valid_emf(json.loads(server.lines[0]))
    server.close()
    replacement = LineServer(server.port)  # the agent restarts on the same port
    assert _wait(lambda: _send_until_seen(replacement, "second"), timeout=10)


def _send_until_seen(server: LineServer, name: str) -> bool:
    metrics.count(name)
    metrics.flush(1.0)
    return any(f'"{name}"' in line for line in server.lines)


def test_agent_over_udp() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    port = receiver.getsockname()[1]
    metrics.configure("Agent/Test", outputs=[f"udp://127.0.0.1:{port}"], flush_interval=0, env={})
    for i in range(150):
        metrics.count(f"m{i}")
    metrics.flush(5.0)
    docs = [json.loads(receiver.recv(65535)) for _ in range(2)]
    for doc in docs:
        assert_valid_emf(doc)
    assert sum(len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in docs) == 150
    receiver.close()


def test_udp_documents_over_a_datagram_are_split_not_dropped() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    port = receiver.getsockname()[1]
    metrics.configure("Agent/Test", outputs=[f"udp://127.0.0.1:{port}"], flush_interval=0, env={})
    with metrics.scope(dimensions={"d": "x" * 1000}):  # one ~300 KB document before splitting
        for k in range(100):
            for v in range(100):
                metrics.observe(f"latency_of_step_{k:03d}", 1000.0 + v + k / 7)
    metrics.flush(5.0)
    seen: dict[str, list[float]] = {}
    while sum(map(len, seen.values())) < 10_000:
        data = receiver.recv(65535)
        assert len(data) <= 65_000 and data.endswith(b"\n")
        doc = json.loads(data)
        assert_valid_emf(doc)
        for definition in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            seen.setdefault(definition["Name"], []).extend(doc[definition["Name"]])
    assert len(seen) == 100 and all(len(values) == 100 for values in seen.values())
    assert seen["latency_of_step_007"] == [1000.0 + v + 1.0 for v in range(100)]
    assert "metrics.agent.dropped.too_large" not in _stats.stats()
    receiver.close()


def test_unreachable_agent_never_blocks_and_counts_drops() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens after the probe closes
    metrics.configure("Agent/Test", outputs=[f"tcp://127.0.0.1:{port}"], flush_interval=0, env={})
    start = time.perf_counter()
    for _ in range(200):
        with metrics.scope():
            metrics.count("x")
    assert time.perf_counter() - start < 0.5
    metrics.flush(5.0)
    assert _wait(lambda: _stats.stats().get("metrics.agent.dropped.unreachable", 0) >= 200)


def test_an_agent_that_stops_reading_never_blocks_and_bounds_the_exit() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    metrics.configure("Agent/Test", outputs=[f"tcp://127.0.0.1:{port}"], flush_interval=0, env={})
    start = time.perf_counter()
    for i in range(2000):  # ~4 MB of EMF: far more than the socket buffers hold
        with metrics.scope(dimensions={"i": str(i % 50)}):
            for k in range(20):
                metrics.observe(f"a_reasonably_long_metric_name_{k}", float(i))
    assert time.perf_counter() - start < 3.0  # the caller never waits for the agent
    start = time.perf_counter()
    assert metrics.flush(0.5) is False
    metrics.shutdown(1.0)
    assert time.perf_counter() - start < 2.5  # flush + shutdown stay within their timeouts
    counts = _stats.stats()
    unsent = counts.get("metrics.agent.dropped.shutdown", 0)
    assert unsent + counts.get("metrics.agent.dropped.unconfirmed_at_exit", 0) > 0
    for conn in (*accepted, server):
        conn.close()


def test_a_forked_worker_sends_its_own_metrics_once() -> None:
    server = LineServer()
    endpoint = f"tcp://127.0.0.1:{server.port}"
    metrics.configure("Agent/Test", outputs=[endpoint], flush_interval=0.1, env={})
    metrics.count("parent_before_fork")
    assert metrics.flush(5.0)  # the sender thread and its connection exist before the fork
    metrics.count("pending_at_fork")  # the parent's to send, not the child's
    pid = os.fork()
    if pid == 0:  # the child: a pre-forked web worker
        code = 1
        try:
            metrics.count("child_interval")  # sent by the child's own interval thread
            time.sleep(0.5)
            with metrics.scope(dimensions={"worker": "child"}):
                metrics.count("child_scope")
            code = 0 if metrics.flush(5.0) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert metrics.flush(5.0)
    names = ("parent_before_fork", "pending_at_fork", "child_interval", "child_scope")
    assert _wait(lambda: all(any(f'"{n}"' in line for line in server.lines) for n in names))
    assert sum('"pending_at_fork"' in line for line in server.lines) == 1
    for line in server.lines:
        assert_valid_emf(json.loads(line))  # no interleaved writes on a shared connection
    server.close()


def test_bad_agent_endpoint_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="AWS_EMF_AGENT_ENDPOINT='http://x:1' is not valid"):
        metrics.configure(env={"AWS_EMF_AGENT_ENDPOINT": "http://x:1"})


def test_file_output(tmp_path: Path) -> None:
    path = tmp_path / "emf.log"
    metrics.configure("File/Test", outputs=[f"file:{path}"], flush_interval=0, env={})
    metrics.gauge("depth", 4)
    metrics.shutdown()
    (doc,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert_valid_emf(doc)
    assert doc["depth"] == 4


def _read_back(client: Any, namespace: str, name: str, dims: dict[str, str], stat: str) -> float:
    now = datetime.now(UTC)
    result = client.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                    },
                    "Period": 60,
                    "Stat": stat,
                },
            }
        ],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=10),
    )
    return float(sum(result["MetricDataResults"][0]["Values"]))


def _cloudwatch(moto: str) -> Any:
    return boto3.client("cloudwatch", endpoint_url=moto, region_name="us-east-1")


def test_put_metric_data_read_back_with_get_metric_data(moto: str) -> None:
    output = PutMetricDataOutput(endpoint_url=moto, region="us-east-1", linger=0.05)
    metrics.configure("PMD/Test", outputs=[output], service="svc", flush_interval=0, env={})
    latencies = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 250.5]
    for value in latencies:
        metrics.observe("latency", value, dimensions={"route": "/a"})
    for _ in range(5):
        metrics.count("orders", dimensions={"route": "/a"})
    with metrics.scope(dimensions={"route": "/b"}):
        metrics.count("orders", 2)
    assert metrics.flush(10.0)
    client = _cloudwatch(moto)
    a = {"ServiceName": "svc", "route": "/a"}
    assert _read_back(client, "PMD/Test", "latency", a, "Sum") == sum(latencies)
    assert _read_back(client, "PMD/Test", "latency", a, "SampleCount") == len(latencies)
    assert _read_back(client, "PMD/Test", "latency", a, "Maximum") == 250.5
    assert _read_back(client, "PMD/Test", "orders", a, "Sum") == 5
    assert (
        _read_back(client, "PMD/Test", "orders", {"ServiceName": "svc", "route": "/b"}, "Sum") == 2
    )
    assert _stats.stats()["metrics.cloudwatch.sent"] == 3  # one datum per series


def test_put_metric_data_batches_within_limits_and_retries_throttling(moto: str) -> None:
    client = _cloudwatch(moto)
    calls: list[int] = []
    failures = [2]

    def throttle(request: Any, **_: Any) -> AWSResponse | None:
        if failures[0]:
            failures[0] -= 1
            return AWSResponse(request.url, 503, {}, _Raw())
        return None

    def count_call(params: dict[str, Any], **_: Any) -> None:
        calls.append(len(params["MetricData"]))

    client.meta.events.register("before-send.cloudwatch.PutMetricData", throttle)
    client.meta.events.register("provide-client-params.cloudwatch.PutMetricData", count_call)
    output = PutMetricDataOutput(client=client, linger=0.05)
    metrics.configure(
        "PMD/Test", outputs=[output], flush_interval=0, max_dimension_combinations=5000, env={}
    )
    for i in range(2500):
        metrics.count("per_user", dimensions={"user": str(i)})
    assert metrics.flush(20.0)
    # <= 1,000 datums per call; how the 2,500 split depends on timing (linger vs the enqueueing)
    assert max(calls) <= 1000 and sum(calls) == 2500 and len(calls) >= 3
    assert failures == [0]  # two 503s were retried by botocore, nothing dropped
    assert "metrics.cloudwatch.dropped.error" not in _stats.stats()
    assert _read_back(client, "PMD/Test", "per_user", {"user": "2499"}, "Sum") == 1


class _Raw:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


def test_split_by_size_respects_the_megabyte() -> None:
    small = [{"MetricName": "m", "Values": [1.0], "Counts": [1.0]}] * 2500
    assert [len(chunk) for chunk in split_by_size(small)] == [1000, 1000, 500]
    big = [{"MetricName": "m" * 200, "Values": [1.0] * 150, "Counts": [1.0] * 150}] * 600
    chunks = split_by_size(big)
    assert len(chunks) > 1 and sum(len(c) for c in chunks) == 600
    assert all(3 * len(json.dumps(c)) < 1_000_000 + 3 * 2000 for c in chunks)


def _prometheus_workload(registry: CollectorRegistry) -> None:
    metrics.configure("Prom/Test", outputs=[PrometheusOutput(registry)], flush_interval=0, env={})
    metrics.record_request("/items/{id}", "GET", 200, 120.0)
    metrics.record_request("/items/{id}", "GET", 500, 80.0)
    metrics.gauge("queue.depth", 7)
    metrics.flush()


def _check_exposition(text: str) -> None:
    assert 'request_count_total{method="GET",route="/items/{id}"} 2.0' in text
    assert 'server_errors_total{method="GET",route="/items/{id}"} 1.0' in text
    assert 'latency_seconds_count{method="GET",route="/items/{id}"} 2.0' in text
    assert 'latency_seconds_sum{method="GET",route="/items/{id}"} 0.2' in text
    assert "queue_depth 7.0" in text


def test_prometheus_scrape_shows_values_recorded_since_the_last_flush_in_prometheus_names() -> None:
    from prometheus_client import generate_latest

    registry = CollectorRegistry()
    metrics.configure("Prom/Test", outputs=[PrometheusOutput(registry)], flush_interval=3600, env={})
    try:
        metrics.count("Orders", 2)
        metrics.observe("Latency", 250.0)
        metrics.observe("PayloadSize", 2048, unit="Bytes")
        metrics.gauge("HTTPQueueDepth", 3)
        text = generate_latest(registry).decode()  # no flush: the scrape itself must see them
        assert "orders_total 2.0" in text
        assert "latency_seconds_sum 0.25" in text
        assert "payload_size_bytes_count 1.0" in text
        assert "http_queue_depth 3.0" in text
        samples = [line for line in text.splitlines() if not line.startswith("#")]
        assert not [line for line in samples if "Orders" in line or "Latency" in line]
        metrics.count("Orders")
        assert "orders_total 3.0" in generate_latest(registry).decode()  # counted once each
    finally:
        metrics.shutdown()
    assert "orders_total" not in generate_latest(registry).decode()  # unregistered at shutdown


def test_prometheus_on_flask() -> None:
    from flask import Flask

    app = Flask("t")
    app.add_url_rule("/", "index", lambda: "hi")
    registry = CollectorRegistry()
    mount_flask(app, registry=registry)
    _prometheus_workload(registry)
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    _check_exposition(response.get_data(as_text=True))
    assert app.test_client().get("/").get_data(as_text=True) == "hi"


def test_prometheus_on_fastapi() -> None:
    import asyncio

    import httpx
    from fastapi import FastAPI

    app = FastAPI()
    registry = CollectorRegistry()
    mount_fastapi(app, registry=registry)
    _prometheus_workload(registry)

    async def scrape() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/metrics")  # no redirect to /metrics/

    response = asyncio.run(scrape())
    assert response.status_code == 200
    _check_exposition(response.text)


def test_put_metric_data_failures_are_counted_not_raised() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = PutMetricDataOutput(
        endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1", max_attempts=1, linger=0
    )
    metrics.configure("PMD/Test", outputs=[output], flush_interval=0, env={})
    metrics.count("lost", dimensions={"a": "1"})
    metrics.count("lost", dimensions={"a": "2"})
    assert metrics.flush(20.0)
    assert _stats.stats()["metrics.cloudwatch.dropped.error"] == 2
