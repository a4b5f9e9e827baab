"""The web examples run as they are and produce a trace with a client subsegment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "service"), [("flask_app.py", "shop-flask"), ("fastapi_app.py", "shop-fastapi")]
)
def test_example_prints_a_trace_with_the_downstream_call(script: str, service: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    root = next(line.split("Root=")[1] for line in lines if "X-Amzn-Trace-Id" in line)
    assert f'"received_trace_header": "Root={root};Parent=' in done.stdout
    assert any(line.startswith(f"{service} [segment]") and "http 200" in line for line in lines)
    assert any(line.startswith("  inventory [subsegment]") for line in lines)
