"""The sidecar's seams: receivers (listeners) feed one :class:`~tracekit.xray.transports.SegmentSink`
(the X-Ray sender, the tail sampler or the local store).

A new ingestion protocol (OTLP, EMF...) is one more :class:`Listener` that feeds the shared sink;
nothing else in the sidecar changes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


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


@runtime_checkable
class Buffered(Protocol):
    """A listener with an output buffer of its own (EMF lines, forwarded OTLP), within the
    sidecar's ``--memory-limit``."""

    name: str

    @property
    def buffered_bytes(self) -> int: ...
