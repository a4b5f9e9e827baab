"""The metrics and logs benchmarks run (small workload) and check what every library wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True, text=True, timeout=90, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_metrics_benchmark_runs_and_checks_the_documents() -> None:
    out = _run("bench_metrics.py", "--invocations", "300", "--rounds", "1")
    rows = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {"tracekit", "aws-embedded-metrics"} <= rows, out
    assert "record_request (RED hook):" in out


def test_logs_benchmark_runs_and_checks_the_lines() -> None:
    out = _run("bench_logs.py", "--lines", "300", "--rounds", "1")
    assert "structlog (plain JSON)" in out and '"xray_trace_id":"1-' in out, out
