"""Paths and parameters of the dashboards tests, and running the CLI in process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = ROOT / "observability"
EXAMPLES_DIR = ROOT / "examples" / "observability"
TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"
PARAMS = ["--param", f"alarm_topic={TOPIC}"]

Run = Callable[..., tuple[int, str]]


def run_json(run: Run, command: str, *args: str) -> tuple[int, Any]:
    code, out = run(command, *args, "--json")
    return code, json.loads(out)
