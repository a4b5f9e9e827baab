"""Expected conditions print one line, never a traceback; the stack only at debug level.

Each case is a real app in a subprocess, pointed at a loopback port nobody listens on (or given a bad
variable); its stderr (plain ``logging``) or its stdout (tracekit's JSON logs) is counted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

APP = """
import logging, os, sys, time
import tracekit, tracekit.logs as logs, tracekit.metrics as metrics

if os.environ.get("JSON_LOGS"):
    logs.configure()
if os.environ.get("DEBUG"):
    logging.getLogger("tracekit").setLevel(logging.DEBUG)
case = sys.argv[1]
if case == "no-daemon":  # the sampling poller asks the daemon for rules as the first span starts
    tracekit.configure(exporters="none")
    with tracekit.span("work"):
        pass
    deadline = time.monotonic() + 10
    while not tracekit.stats().get("errors.sampling.rules_poll") and time.monotonic() < deadline:
        time.sleep(0.05)
elif case == "no-agent":
    metrics.configure("App", outputs=["agent"])
    metrics.count("Orders")
    metrics.flush(5)
elif case == "bad-variable":  # found when the first span configures tracing implicitly
    with tracekit.span("work"):
        pass
print("done", sorted(k for k in tracekit.stats() if k.startswith("errors.")), file=sys.stderr)
"""

CASES = {  # case: (stats key, the value set, what the line says)
    "no-daemon": ("errors.sampling.rules_poll", "127.0.0.1:{port}", "from the X-Ray daemon at http://"),
    "no-agent": ("errors.metrics.agent", "tcp://127.0.0.1:{port}", "no CloudWatch agent at tcp://"),
    "bad-variable": ("errors.configure", "bogus", "tracing is off: OTEL_TRACES_SAMPLER='bogus'"),
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(case: str, **extra: str) -> subprocess.CompletedProcess[str]:
    value = CASES[case][1].format(port=_closed_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AWS_XRAY", "AWS_EMF"))}
    env.update(
        AWS_XRAY_DAEMON_ADDRESS=value if case == "no-daemon" else "127.0.0.1:9",
        AWS_EMF_AGENT_ENDPOINT=value if case == "no-agent" else "tcp://127.0.0.1:9",
        **({"OTEL_TRACES_SAMPLER": value} if case == "bad-variable" else {}),
        **extra,
    )
    done = subprocess.run(
        [sys.executable, "-c", APP, case], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert CASES[case][0] in done.stderr.splitlines()[-1], done.stderr  # the condition did happen
    return done


@pytest.mark.parametrize("case", CASES)
def test_expected_condition_is_one_line_on_stderr(case: str) -> None:
    lines = _run(case).stderr.splitlines()[:-1]
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith("tracekit: ") and CASES[case][2] in lines[0]


@pytest.mark.parametrize("case", CASES)
def test_expected_condition_in_json_logs_has_no_stack(case: str) -> None:
    done = _run(case, JSON_LOGS="1")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["level"] for r in records] == ["warning"]
    assert "exception" not in records[0], records[0]
    assert CASES[case][2] in records[0]["message"]


def test_stack_is_logged_at_debug_level() -> None:
    lines = _run("no-agent", DEBUG="1").stderr.splitlines()
    assert lines[0].startswith("tracekit: no CloudWatch agent")
    assert "Traceback (most recent call last):" in lines
