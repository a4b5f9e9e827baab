"""The application's exit is bounded by TRACEKIT_FLUSH_TIMEOUT whatever the upstream does: a daemon
name that does not resolve (with a slow resolver), an OTLP/HTTP endpoint that never answers, a gRPC
endpoint that refuses. Each case is a real Flask app in a subprocess; the time measured is from its
last request to the end of the process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "bench" / "exit_app.py"
FLUSH_TIMEOUT = 2.0


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port that accepts connections and never answers (the backlog holds them)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield int(server.getsockname()[1])
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exit_seconds(env: dict[str, str]) -> float:
    """Seconds from the app's last request to the end of its process."""
    full = {**os.environ, "TRACEKIT_FLUSH_TIMEOUT": str(FLUSH_TIMEOUT), **env}
    proc = subprocess.Popen([sys.executable, str(APP)], env=full, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("LAST_REQUEST"), line
    last = float(line.split()[1])
    proc.wait(timeout=60)
    took = time.monotonic() - last
    assert proc.returncode == 0
    return took


@pytest.mark.parametrize("stall", ["", "1"])
def test_unresolvable_daemon_costs_the_exit_nothing(stall: str) -> None:
    took = exit_seconds({"AWS_XRAY_DAEMON_ADDRESS": "nonexistent.invalid:2000", "STALL_RESOLVER": stall,
                         "TRACEKIT_EXPORTERS": "xray"})  # fmt: skip
    assert took < 1.5, took  # not 30 x the resolver's second


def test_hanging_otlp_http_endpoint_is_cut_at_the_flush_timeout(hanging_port: int) -> None:
    took = exit_seconds({"TRACEKIT_EXPORTERS": "xray,otlp", "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hanging_port}"})  # fmt: skip
    assert took < FLUSH_TIMEOUT + 1.0, took


def test_refused_grpc_endpoint_is_cut_at_the_flush_timeout() -> None:
    took = exit_seconds({"TRACEKIT_EXPORTERS": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                         "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}"})  # fmt: skip
    assert took < FLUSH_TIMEOUT + 1.0, took
