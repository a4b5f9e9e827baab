"""Helpers for the web tests (a uniquely named module: every test area has its own conftest)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracekit
from support.udp_receiver import UdpReceiver
from support.xray_schema import validate_document

SERVICE = "web-test"


@dataclass
class Traced:
    """What a traced test sees: X-Ray documents as the daemon got them, and the OTel spans."""

    daemon: UdpReceiver
    exporter: InMemorySpanExporter

    def documents(self, n: int) -> list[dict[str, Any]]:
        """Wait for ``n`` requests to end, flush, get their documents, check them with the schema.

        A server ends its span after the client has the response, so the test waits for the spans
        first: a flush while a request is still ending would send its children on their own.
        """
        self.wait_server_spans(n)
        tracekit.force_flush()
        docs = self.daemon.wait_for(n)
        for doc in docs:
            validate_document(doc)
        assert len(docs) == n, docs
        return docs

    def segment(self) -> dict[str, Any]:
        """The one segment document of the one request the test made."""
        return self.documents(1)[0]

    def server_spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.kind.name == "SERVER"]

    def wait_server_spans(self, n: int, timeout: float = 5.0) -> list[ReadableSpan]:
        """The finished server spans, once there are ``n`` (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(spans := self.server_spans()) < n:
            assert time.monotonic() < deadline, f"{len(spans)} of {n} server spans ended"
            time.sleep(0.005)
        return spans


def serve_in_thread(serve: Callable[[], None], stop: Callable[[], None]) -> Callable[[], None]:
    """Run a server loop in a daemon thread; returns the function that stops and joins it."""
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def shutdown() -> None:
        stop()
        thread.join(10)

    return shutdown
