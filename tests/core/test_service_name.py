"""One service name for traces, logs and metrics, whichever is configured first.

A real app in a subprocess: JSON logs and EMF metrics on its stdout, X-Ray documents to a stand-in
daemon. ``tracekit.configure(service=...)`` wins; else ``OTEL_SERVICE_NAME`` beats Powertools' name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

APP = """
import sys
import tracekit, tracekit.logs as logs, tracekit.metrics as metrics

service = sys.argv[2] or None
if sys.argv[1] == "metrics-first":
    metrics.configure("App", outputs=["stdout"], flush_interval=0)
    logs.configure()
    tracekit.configure(service=service)
else:
    tracekit.configure(service=service)
    logs.configure()
    metrics.configure("App", outputs=["stdout"], flush_interval=0)
with tracekit.span("work"):
    logs.get_logger("app").info("hello")
    metrics.count("Orders")
metrics.flush()
tracekit.force_flush()
"""

CASES = {
    "configure-then-metrics": ("tracing-first", "orders", {}, "orders"),
    "metrics-then-configure": ("metrics-first", "orders", {}, "orders"),
    "otel-over-powertools": (
        "metrics-first", "", {"OTEL_SERVICE_NAME": "a", "POWERTOOLS_SERVICE_NAME": "b"}, "a"
    ),
}


def _run(case: str, daemon_port: int) -> tuple[str, list[dict[str, Any]]]:
    order, service, extra, expected = CASES[case]
    env = {k: v for k, v in os.environ.items() if not k.endswith("SERVICE_NAME")}
    env.update(
        extra,
        AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon_port}",
        OTEL_TRACES_SAMPLER="always_on",
        TRACEKIT_EXPORTERS="xray",
    )
    done = subprocess.run(
        [sys.executable, "-c", APP, order, service], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return expected, lines


@pytest.mark.parametrize("case", CASES)
def test_logs_carry_the_service(case: str, xray_daemon: Any) -> None:
    expected, lines = _run(case, xray_daemon.port)
    log = next(line for line in lines if line.get("message") == "hello")
    assert log["service"] == expected


@pytest.mark.parametrize("case", CASES)
def test_metrics_carry_the_service_dimension(case: str, xray_daemon: Any) -> None:
    expected, lines = _run(case, xray_daemon.port)
    emf = next(line for line in lines if "_aws" in line)
    assert emf["ServiceName"] == expected
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["ServiceName"]]


@pytest.mark.parametrize("case", CASES)
def test_xray_segment_is_named_after_the_service(case: str, xray_daemon: Any) -> None:
    expected, _ = _run(case, xray_daemon.port)
    segment = xray_daemon.wait_for(1)[0]
    assert segment["name"] == expected
