"""Fixtures for the web tests: tracekit sending to a stand-in daemon, plus the spans in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from web_helpers import SERVICE, Traced

import tracekit
from support.udp_receiver import UdpReceiver
from tracekit._shared import stats as _stats
from tracekit.tracing import provider


@pytest.fixture
def traced(xray_daemon: UdpReceiver) -> Iterator[Traced]:
    _stats.reset()
    exporter = InMemorySpanExporter()
    tracekit.configure(
        service=SERVICE,
        exporters=["xray"],
        daemon_udp=("127.0.0.1", xray_daemon.port),
        sampler=ALWAYS_ON,
        span_processors=[SimpleSpanProcessor(exporter)],
    )
    try:
        yield Traced(xray_daemon, exporter)
    finally:
        provider.shutdown()
