"""What recorders hand to outputs: one batch per flush, series descriptions beside their values."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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


@dataclass
class Batch:
    """One flush: ``values[i]`` holds what was recorded for ``series[i]`` since the last flush.

    ``memo`` is the same dict for every batch with the same ``series`` (the recorder caches the
    description of a scope's shape), so outputs can keep per-shape work there (EMF fragments).
    """

    namespace: str
    timestamp_ms: int
    series: Sequence[Series]
    values: Sequence[list[float]]
    properties: dict[str, object] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)

    def items(self) -> Iterator[tuple[Series, list[float]]]:
        return zip(self.series, self.values, strict=True)


def emitted(kind: Kind, values: list[float]) -> list[float]:
    """Counters are emitted as their sum per flush (one datum); other kinds keep every value."""
    if kind == "count" and len(values) > 1:
        return [sum(values)]
    return values
