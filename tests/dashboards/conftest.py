"""Fixtures: boto3 CloudWatch on a fresh moto server account, and the CLI run in process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from tracekit.cli import main

ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = ROOT / "observability"
EXAMPLES_DIR = ROOT / "examples" / "observability"
TOPIC = "arn:aws:sns:us-east-1:123456789012:alerts"
PARAMS = ["--param", f"alarm_topic={TOPIC}"]

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def cloudwatch(moto: str) -> Any:
    """A boto3 CloudWatch client on an empty moto account."""
    return boto3.client("cloudwatch", endpoint_url=moto, region_name="us-east-1")


@pytest.fixture
def run(moto: str, capsys: pytest.CaptureFixture[str]) -> Run:
    """``run("plan", path, ...)``: ``tracekit dashboards`` against moto; (exit code, stdout)."""

    def call(command: str, *args: str, aws: bool = True) -> tuple[int, str]:
        capsys.readouterr()
        extra = ["--endpoint-url", moto, "--region", "us-east-1"] if aws else []
        code = main(["dashboards", command, *args, *extra])
        return code, capsys.readouterr().out

    return call


def run_json(run: Run, command: str, *args: str) -> tuple[int, Any]:
    code, out = run(command, *args, "--json")
    return code, json.loads(out)
