"""The tail policy the sidecar applies once a trace is complete (see sampling/README.md).

Head rules decide before the response exists; a tail policy sees the finished root span. A trace
is kept by the first policy whose status range holds its root status (a fault without status
counts as 500): up to ReservoirSize per second, then with FixedRate.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence

from tracekit.sampling.rules import TailPolicy


class TailDecider:
    """Thread-safe keep/drop decisions for finished traces, one reservoir per policy."""

    def __init__(
        self,
        policies: Sequence[TailPolicy],
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._policies = list(policies)
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._used: dict[str, tuple[int, int]] = {}

    def keep(self, status: int | None, fault: bool = False) -> str | None:
        """The name of the policy that keeps a trace with this root status, or None."""
        code = status if status is not None else (500 if fault else None)
        if code is None:
            return None
        for policy in self._policies:
            if policy.applies(code):
                return policy.name if self._take(policy) else None
        return None

    def _take(self, policy: TailPolicy) -> bool:
        second = int(self._clock())
        with self._lock:
            last, used = self._used.get(policy.name, (second, 0))
            used = used if last == second else 0
            if used < policy.reservoir_size:
                self._used[policy.name] = (second, used + 1)
                return True
            self._used[policy.name] = (second, used)
            return self._rng.random() < policy.fixed_rate
