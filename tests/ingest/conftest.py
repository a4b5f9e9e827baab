"""Fixtures for the sidecar's OTLP and EMF receiver tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ingest_helpers import ListSink

from tracekit._shared import stats as _stats


@pytest.fixture(autouse=True)
def _fresh_stats() -> Iterator[None]:
    _stats.reset()
    yield


@pytest.fixture
def sink() -> ListSink:
    return ListSink()
