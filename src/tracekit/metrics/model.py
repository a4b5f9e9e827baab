"""What recorders hand to outputs: one batch per flush, series descriptions beside their values."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

Kind = Literal["count", "gauge", "observe"]
Dimensions = tuple[tuple[str, str], ...]
"""Sorted ``(key, value)`` pairs: hashable, and equal for equal dimension sets."""


class Series(NamedTuple):
    """One metric with one full dimension set. Values travel beside it, in ``Batch.values``."""

    name: str
    unit: str
    resolution: int
    kind: Kind
    dimensions: Dimensions


class Batch:
    """One flush: ``values[i]`` holds what was recorded for ``series[i]`` since the last flush.

    ``memo`` is the same dict for every batch with the same ``series`` (the recorder caches the
    description of a scope's shape), so outputs can keep per-shape work there (EMF fragments).
    A plain class, not a dataclass: cheaper to define on a Lambda cold start.
    """

    __slots__ = ("memo", "namespace", "properties", "series", "timestamp_ms", "values")

    def __init__(self, namespace: str, timestamp_ms: int, series: Sequence[Series],
                 values: Sequence[list[float]], properties: dict[str, object] | None = None,
                 memo: dict[str, Any] | None = None) -> None:
        self.namespace = namespace
        self.timestamp_ms = timestamp_ms
        self.series = series
        self.values = values
        self.properties = {} if properties is None else properties
        self.memo = {} if memo is None else memo

    def items(self) -> Iterator[tuple[Series, list[float]]]:
        return zip(self.series, self.values, strict=True)


def emitted(kind: Kind, values: list[float]) -> list[float]:
    """Counters are emitted as their sum per flush (one datum); other kinds keep every value."""
    if kind == "count" and len(values) > 1:
        return [sum(values)]
    return values
