"""Helpers shared by the ingest tests (imported by name: this directory is on sys.path)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest


class ListSink:
    """A SegmentSink that keeps documents in memory, with an optional capacity (to test overload)."""

    def __init__(self, capacity: int | None = None) -> None:
        self.documents: list[bytes] = []
        self.capacity = capacity
        self._lock = threading.Lock()

    def submit(self, document: bytes) -> bool:
        with self._lock:
            if self.capacity is not None and len(self.documents) >= self.capacity:
                return False
            self.documents.append(document)
            return True

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        pass

    @property
    def buffered_bytes(self) -> int:
        return 0

    @property
    def queued(self) -> int:
        return 0

    def docs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(d) for d in self.documents]


def wait_until(check: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``check`` until it is truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class ListShipper:
    """A LineShipper that keeps lines in memory, with an optional capacity."""

    def __init__(self, capacity: int | None = None) -> None:
        self.lines: list[tuple[str, int | None]] = []
        self.capacity = capacity
        self.closed = False
        self._lock = threading.Lock()

    def put(self, message: str, timestamp_ms: int | None = None) -> bool:
        with self._lock:
            if self.capacity is not None and len(self.lines) >= self.capacity:
                return False
            self.lines.append((message, timestamp_ms))
            return True

    def close(self, timeout: float) -> None:
        self.closed = True

    def docs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(line) for line, _ in self.lines]
