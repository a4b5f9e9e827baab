"""Fixtures: a local X-Ray sampling control plane on 127.0.0.1 and boto3 pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tracekit.sampling.controlplane import ControlPlane

RULES_DIR = Path(__file__).resolve().parents[2] / "sampling"


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def plane(clock: FakeClock) -> Iterator[ControlPlane]:
    """An empty account (only Default) served over HTTP, small pages to exercise pagination."""
    cp = ControlPlane(clock=clock, page_size=2).start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def seeded(plane: ControlPlane) -> ControlPlane:
    """The control plane holding the repository's rule set from sampling/."""
    plane.load_dir(RULES_DIR)
    return plane


@pytest.fixture
def xray(plane: ControlPlane) -> Any:
    """A boto3 X-Ray client without botocore retries, so throttling reaches our own code."""
    return boto3.client("xray", endpoint_url=plane.url, region_name="us-east-1",
                        config=Config(retries={"total_max_attempts": 1}))
