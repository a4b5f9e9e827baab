"""Fixtures: boto3 CloudWatch on a fresh moto server account, and the CLI run in process."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from dashboards_helpers import Run

from tracekit.cli import main


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
