"""Drive a running sidecar container the way a task's applications would, and check what arrived.

Run by ``container-smoke.sh`` on the host: sends one X-Ray segment over UDP (daemon protocol), one
span over OTLP/HTTP (the real OpenTelemetry exporter) and one EMF line over TCP, then waits for
``/health`` to say 200, reads the counters on ``/metrics`` and reads the data back from the AWS
stand-in (moto server): the traces with ``BatchGetTraces`` and the EMF line with ``GetLogEvents``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            sys.exit(f"FAIL: no {what} within {timeout:.0f} s")
        time.sleep(0.2)


def http_get(url: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return None


def send_segment(port: int) -> str:
    now = time.time()
    trace_id = f"1-{int(now):08x}-{os.urandom(12).hex()}"
    doc = {"name": "smoke-udp", "id": os.urandom(8).hex(), "trace_id": trace_id,
           "start_time": now, "end_time": now + 0.01}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b'{"format":"json","version":1}\n' + json.dumps(doc).encode(), ("127.0.0.1", port))
    return trace_id


def send_span(port: int) -> str:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind

    provider = TracerProvider(resource=Resource.create({"service.name": "smoke-otlp"}))
    exporter = OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{port}/v1/traces", compression=Compression.Gzip, timeout=10
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("smoke").start_as_current_span("GET /", kind=SpanKind.SERVER) as span:
        trace_id = f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()
    return f"1-{trace_id[:8]}-{trace_id[8:]}"


def send_emf(port: int) -> str:
    marker = os.urandom(6).hex()
    directive = {
        "Namespace": "Smoke",
        "Dimensions": [["Service"]],
        "Metrics": [{"Name": "Hits", "Unit": "Count"}],
    }
    doc = {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [directive]},
        "Service": "smoke",
        "Hits": 1,
        "Marker": marker,
    }
    with socket.create_connection(("127.0.0.1", port), timeout=5) as tcp:
        tcp.sendall(json.dumps(doc).encode() + b"\n" + b"this line is not EMF\n")
    return marker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("udp", "otlp", "emf", "admin"):
        parser.add_argument(f"--{name}", type=int, required=True, help=f"{name} port")
    parser.add_argument("--aws", required=True, help="moto server URL")
    parser.add_argument("--log-group", required=True)
    parser.add_argument("--log-stream", required=True)
    args = parser.parse_args()

    import boto3

    admin = f"http://127.0.0.1:{args.admin}"
    wait_for("admin port", lambda: http_get(f"{admin}/health"))
    traces = [send_segment(args.udp), send_span(args.otlp)]
    marker = send_emf(args.emf)

    status, body = wait_for(
        "200 from /health", lambda: (r if (r := http_get(f"{admin}/health")) and r[0] == 200 else None)
    )
    print(f"ok   /health {status}: {json.loads(body)['reason']}")

    xray = boto3.client("xray", endpoint_url=args.aws, region_name="us-east-1")
    got = wait_for(
        "traces in X-Ray",
        lambda: (t if len(t := xray.batch_get_traces(TraceIds=traces)["Traces"]) == 2 else None),
    )
    print(f"ok   X-Ray has both traces (UDP segment and OTLP span): {[t['Id'] for t in got]}")

    logs = boto3.client("logs", endpoint_url=args.aws, region_name="us-east-1")

    def emf_events() -> list[str] | None:
        try:
            events = logs.get_log_events(
                logGroupName=args.log_group, logStreamName=args.log_stream, startFromHead=True
            )["events"]
        except logs.exceptions.ResourceNotFoundException:
            return None
        found = [e["message"] for e in events if marker in e["message"]]
        return found or None

    wait_for("EMF line in CloudWatch Logs", emf_events)
    print(f"ok   CloudWatch Logs {args.log_group}/{args.log_stream} has the EMF line")

    metrics = wait_for("/metrics", lambda: http_get(f"{admin}/metrics"))[1]
    wanted = (
        "tracekit_sidecar_udp_received_total",
        "tracekit_sidecar_otlp_spans_received_total",
        "tracekit_sidecar_emf_accepted_total",
        'tracekit_sidecar_emf_rejected_total{reason="not_json"}',
    )
    for name in wanted:
        lines = [line for line in metrics.splitlines() if line.startswith(name + " ")]
        if not lines or float(lines[0].split()[-1]) < 1:
            sys.exit(f"FAIL: /metrics has no {name} >= 1")
        print(f"ok   /metrics {lines[0]}")


if __name__ == "__main__":
    main()
