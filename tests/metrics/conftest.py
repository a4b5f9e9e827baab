"""Metrics fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emf_helpers import Capture

import tracekit.metrics as metrics
from tracekit._shared import stats as _stats


@pytest.fixture
def capture() -> Iterator[Capture]:
    _stats.reset()
    cap = Capture()
    metrics.configure("Test/App", outputs=[cap.output], service="svc", flush_interval=0, env={})
    try:
        yield cap
    finally:
        metrics.shutdown()
