"""The sidecar's EMF agent endpoint (TCP and UDP), with real EMF clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from ingest_helpers import ListShipper, wait_until

import tracekit.metrics
from tracekit._shared import stats as _stats
from tracekit.sidecar.emf_receiver import EmfReceiver


def emf_line(name: str = "Latency", value: object = 12.5, **extra: object) -> bytes:
    doc = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": "Shop", "Dimensions": [["Route"]],
                 "Metrics": [{"Name": name, "Unit": "Milliseconds"}]}
            ],
        },
        "Route": "/cart",
        name: value,
        **extra,
    }
    return json.dumps(doc).encode()


@pytest.fixture
def shipper() -> ListShipper:
    return ListShipper()


@pytest.fixture
def emf(shipper: ListShipper) -> Iterator[EmfReceiver]:
    rx = EmfReceiver("127.0.0.1", 0, shipper=shipper, max_line=4096)
    rx.start()
    yield rx
    rx.stop()


AWS_EMF_SCRIPT = """
import asyncio, sys
from aws_embedded_metrics.logger.metrics_logger_factory import create_metrics_logger
async def main():
    for i in range(int(sys.argv[1])):
        m = create_metrics_logger()
        m.set_namespace('Shop')
        m.put_dimensions({'Route': '/cart'})
        m.put_metric('Latency', 12.5, 'Milliseconds')
        m.set_property('RequestId', f'r-{i}')
        await m.flush()
asyncio.run(main())
"""


def run_aws_embedded_metrics(rx: EmfReceiver, documents: int) -> None:
    """The real aws-embedded-metrics library in its own process; `default` is its agent environment."""
    host, port = rx.address()
    env = {**os.environ, "AWS_EMF_AGENT_ENDPOINT": f"tcp://{host}:{port}",
           "AWS_EMF_ENVIRONMENT": "default", "AWS_EMF_SERVICE_NAME": "shop"}
    subprocess.run([sys.executable, "-c", AWS_EMF_SCRIPT, str(documents)], env=env, check=True, timeout=60)


def test_aws_embedded_metrics_tcp_sink_is_received(emf: EmfReceiver, shipper: ListShipper) -> None:
    run_aws_embedded_metrics(emf, 1)
    wait_until(lambda: shipper.lines, what="the aws-embedded-metrics document")
    (doc,) = shipper.docs()
    assert doc["Latency"] == 12.5 and doc["RequestId"] == "r-0"
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop"
    assert shipper.lines[0][1] == doc["_aws"]["Timestamp"]
    assert _stats.stats()["sidecar.emf.accepted"] == 1


@pytest.mark.parametrize("scheme", ["tcp", "udp"])
def test_tracekit_agent_sink_is_received(emf: EmfReceiver, shipper: ListShipper, scheme: str) -> None:
    host, port = emf.address()
    tracekit.metrics.configure("Shop", outputs=[f"{scheme}://{host}:{port}"], service="shop")
    try:
        for route in ("/a", "/b"):
            tracekit.metrics.count("Orders", 2, dimensions={"Route": route})
        tracekit.metrics.observe("Latency", 3.5)
        assert tracekit.metrics.flush(5)
    finally:
        tracekit.metrics.shutdown()
    wait_until(lambda: sum(1 for d in shipper.docs() if "Orders" in d) == 2, what="tracekit documents")
    orders = sorted(d["Route"] for d in shipper.docs() if "Orders" in d)
    assert orders == ["/a", "/b"]


def test_invalid_lines_are_counted_and_never_shipped(
    emf: EmfReceiver, shipper: ListShipper, caplog: pytest.LogCaptureFixture
) -> None:
    bad = [
        b"not json",
        b'{"no_aws": 1}',
        emf_line(value="fast"),
        b"\xff\xfe{}",
        b"[1, 2]",
        b'{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "bad ns!", '
        b'"Dimensions": [], "Metrics": []}]}}',
    ]
    with socket.create_connection(emf.address()) as conn:
        conn.sendall(b"\n".join([emf_line("First"), *bad, emf_line("Last")]) + b"\n")
    wait_until(lambda: _stats.stats().get("sidecar.emf.received") == 8, what="8 lines")
    wait_until(lambda: len(shipper.lines) == 2, what="the 2 valid lines")
    assert [next(k for k in d if k in ("First", "Last")) for d in shipper.docs()] == ["First", "Last"]
    counts = _stats.stats()
    assert counts["sidecar.emf.rejected.not_json"] == 1
    assert counts["sidecar.emf.rejected.not_utf8"] == 1
    assert counts["sidecar.emf.rejected.invalid_emf"] == 4
    text = caplog.text
    assert "EMF line from tcp 127.0.0.1:" in text and "rejected (invalid_emf): $._aws" in text


def test_overlong_tcp_line_is_refused_and_closes_its_connection(
    emf: EmfReceiver, shipper: ListShipper
) -> None:
    with socket.create_connection(emf.address()) as conn:
        conn.sendall(b'{"x": "' + b"y" * 10_000)  # over max_line=4096, in pieces, no newline yet
        conn.settimeout(5)
        assert conn.recv(1) == b""  # closed: reading on to the newline would hold what is refused
    with socket.create_connection(emf.address()) as conn:
        conn.sendall(emf_line("After") + b"\n")
    wait_until(lambda: shipper.lines, what="the line from the next connection")
    assert "After" in shipper.docs()[0]
    assert _stats.stats()["sidecar.emf.rejected.too_large"] == 1


def test_udp_datagrams_with_several_lines_and_no_final_newline(
    emf: EmfReceiver, shipper: ListShipper
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(emf_line("A") + b"\n" + emf_line("B"), emf.address())
        udp.sendto(b"garbage\n", emf.address())
    wait_until(lambda: len(shipper.lines) == 2, what="two UDP lines")
    wait_until(lambda: _stats.stats().get("sidecar.emf.rejected.not_json") == 1, what="the bad datagram")


def test_full_shipper_counts_drops(shipper: ListShipper) -> None:
    shipper.capacity = 1
    rx = EmfReceiver("127.0.0.1", 0, shipper=shipper)
    rx.start()
    try:
        with socket.create_connection(rx.address()) as conn:
            conn.sendall(emf_line() + b"\n" + emf_line() + b"\n")
        wait_until(lambda: _stats.stats().get("sidecar.emf.dropped.not_shipped") == 1, what="a drop")
    finally:
        rx.stop()
    assert shipper.closed  # stop() flushes and closes the shipper


def test_connection_cap_and_stop_with_idle_clients(shipper: ListShipper) -> None:
    rx = EmfReceiver("127.0.0.1", 0, shipper=shipper, max_connections=1)
    rx.start()
    idle = socket.create_connection(rx.address())
    wait_until(lambda: rx._conns, what="the first connection to be served")
    extra = socket.create_connection(rx.address())
    assert idle.recv(1) == b""  # the silent one made room for it
    wait_until(lambda: _stats.stats().get("sidecar.emf.connections.evicted") == 1,
               what="the eviction to be counted")
    began = time.monotonic()
    rx.stop()  # must not hang on the idle client
    assert time.monotonic() - began < 3
    idle.close()
    extra.close()


def test_a_failing_shipper_does_not_kill_the_connection_thread() -> None:
    class Broken(ListShipper):
        def put(self, message: str, timestamp_ms: int | None = None) -> bool:
            raise RuntimeError("boom")

    rx = EmfReceiver("127.0.0.1", 0, shipper=Broken())
    rx.start()
    try:
        with socket.create_connection(rx.address()) as conn:
            conn.sendall(emf_line() + b"\n" + emf_line() + b"\n")
            wait_until(lambda: _stats.stats().get("sidecar.emf.dropped.not_shipped") == 2, what="2 drops")
            conn.sendall(emf_line() + b"\n")  # the connection is still served
            wait_until(lambda: _stats.stats().get("sidecar.emf.dropped.not_shipped") == 3, what="3 drops")
        assert _stats.stats()["errors.sidecar.emf.shipper"] == 3
    finally:
        rx.stop()


def test_tcp_and_udp_share_the_port(emf: EmfReceiver) -> None:
    host, port = emf.address()
    assert port != 0
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(OSError):
        probe.bind((host, port))
    probe.close()


def test_emf_lines_reach_cloudwatch_logs_with_the_emf_header(moto: str) -> None:
    """Clients -> EMF endpoint -> LogsShipper -> PutLogEvents (moto) -> GetLogEvents, in order."""
    import boto3

    from tracekit.logs.cwlogs import LogsShipper

    client = boto3.client("logs", endpoint_url=moto, region_name="us-east-1")
    sent_headers: list[dict[str, str]] = []
    client.meta.events.register(
        "before-send.cloudwatch-logs.PutLogEvents",
        lambda request, **_: sent_headers.append(
            {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        ),
    )
    shipper = LogsShipper("/ecs/shop/metrics", "sidecar", emf=True, linger=0.05, client=client)
    rx = EmfReceiver("127.0.0.1", 0, shipper=shipper)
    rx.start()
    try:
        run_aws_embedded_metrics(rx, 20)
        host, port = rx.address()
        tracekit.metrics.configure("Shop", outputs=[f"tcp://{host}:{port}"], service="shop")
        tracekit.metrics.count("Orders", 3)
        tracekit.metrics.shutdown()
        with socket.create_connection(rx.address()) as conn:
            conn.sendall(b"\n".join(emf_line("M", i) for i in range(25)) + b"\nnot emf\n")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"\n".join(emf_line("M", i) for i in range(25, 50)) + b"\n", rx.address())
        wait_until(lambda: _stats.stats().get("sidecar.emf.accepted") == 71, what="71 accepted lines")
    finally:
        rx.stop()  # flushes the shipper
    events = client.get_log_events(
        logGroupName="/ecs/shop/metrics", logStreamName="sidecar", startFromHead=True
    )["events"]
    docs = [json.loads(e["message"]) for e in events]
    assert sorted(d["M"] for d in docs if "M" in d) == list(range(50))
    assert sorted(d["RequestId"] for d in docs if "RequestId" in d) == sorted(f"r-{i}" for i in range(20))
    assert [d["Orders"] for d in docs if "Orders" in d] == [3]
    assert [e["timestamp"] for e in events] == [d["_aws"]["Timestamp"] for d in docs]
    assert sent_headers and all(h.get("x-amzn-logs-format") == "json/emf" for h in sent_headers)
    assert _stats.stats()["sidecar.emf.rejected.not_json"] == 1


def test_cloudwatch_logs_down_costs_the_lines_not_the_endpoint() -> None:
    """Fault: the Logs endpoint refuses connections; lines are accepted, then counted as dropped."""
    from tracekit.logs.cwlogs import LogsShipper

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    shipper = LogsShipper("/g", "s", region="us-east-1", endpoint_url=dead, emf=True, linger=0.01,
                          retry_for=0.5)  # fmt: skip
    rx = EmfReceiver("127.0.0.1", 0, shipper=shipper, shutdown_timeout=10)
    rx.start()
    try:
        with socket.create_connection(rx.address()) as conn:
            conn.sendall(b"\n".join(emf_line("Down", i) for i in range(5)) + b"\n")
        wait_until(lambda: _stats.stats().get("sidecar.emf.accepted") == 5, what="5 accepted lines")
    finally:
        rx.stop()
    counts = _stats.stats()
    assert counts["cwlogs.dropped.retries_exhausted"] == 5
    assert counts["errors.cwlogs.put_log_events"] >= 1
