"""The two seams of the sidecar: receivers (listeners) and where their documents go (the sink).

A new ingestion protocol (OTLP, EMF...) is one more :class:`Listener` that feeds the shared sink;
nothing else in the sidecar changes.
"""

from __future__ import annotations

from typing import Protocol


class SegmentSink(Protocol):
    """Takes serialised segment documents without blocking; bounded, counts what it drops."""

    def submit(self, document: bytes) -> bool: ...

    def flush(self, timeout: float) -> bool: ...

    def close(self, timeout: float) -> None: ...

    @property
    def buffered_bytes(self) -> int: ...

    @property
    def queued(self) -> int: ...


class Service(Protocol):
    """Something with its own threads: ``start`` returns at once, ``stop`` ends the work."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Listener(Service, Protocol):
    """A receiver: bound when constructed, receiving between ``start`` and ``stop``."""

    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when configured with port 0)."""
        ...
