"""Fixtures for the tracing core: tracekit configured against a stand-in daemon."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import tracekit
from tracekit._shared import stats as _stats
from tracekit.tracing import provider


@pytest.fixture
def traced(xray_daemon: Any) -> Iterator[Any]:
    """tracekit sending X-Ray documents to the ``xray_daemon`` receiver, every trace sampled."""
    _stats.reset()
    tracekit.configure(
        service="core-test",
        exporters=["xray"],
        daemon_udp=("127.0.0.1", xray_daemon.port),
        sampler=ALWAYS_ON,
    )
    yield xray_daemon
    provider.shutdown()
