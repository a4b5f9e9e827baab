"""What recorders hand to outputs: finished series, grouped in one batch per flush."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Kind = Literal["count", "gauge", "observe"]
Dimensions = tuple[tuple[str, str], ...]
"""Sorted ``(key, value)`` pairs: hashable, and equal for equal dimension sets."""


class Series(NamedTuple):
    """All values of one metric with one dimension set since the last flush."""

    name: str
    unit: str
    resolution: int
    kind: Kind
    dimensions: Dimensions
    values: list[float]

    def emitted(self) -> list[float]:
        """Counters are emitted as their sum per flush (one datum); other kinds keep every value."""
        if self.kind == "count" and len(self.values) > 1:
            return [sum(self.values)]
        return self.values


@dataclass
class Batch:
    """One flush: every series of a scope, with the namespace, time and document properties."""

    namespace: str
    timestamp_ms: int
    series: list[Series]
    properties: dict[str, object] = field(default_factory=dict)
