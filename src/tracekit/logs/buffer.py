"""Per-request log state: debug sampling and the buffer of debug records kept for errors only.

A request that ends well discards its buffered debug records; one that ends in an error (or logs at
error level) writes them out first, so the lines that explain a failure are there without paying for
debug output on every request. The buffer is bounded; the oldest records go first, counted.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tracekit._shared import stats

Record = dict[str, Any]
Token = contextvars.Token["RequestLog | None"]


class RequestLog:
    """One request's log state. Set ``error`` to have the debug buffer written out at the end.

    A plain class, not a dataclass: cheaper to define on a Lambda cold start."""

    __slots__ = ("buffer", "error", "fields", "limit", "sampled", "started")

    def __init__(self, sampled: bool, limit: int) -> None:
        self.sampled = sampled
        self.limit = limit
        self.started = time.perf_counter()
        self.error = False
        self.fields: dict[str, Any] = {}
        self.buffer: deque[Record] = deque()

    def keep(self, record: Record) -> None:
        if len(self.buffer) >= self.limit:
            self.buffer.popleft()
            stats.incr("logs.buffer.dropped")
        self.buffer.append(record)

    def release(self, write: Callable[[Record], None]) -> None:
        while self.buffer:
            write(self.buffer.popleft())


_current: contextvars.ContextVar[RequestLog | None] = contextvars.ContextVar(
    "tracekit_request_log", default=None
)


def current() -> RequestLog | None:
    return _current.get()


def start(sample_rate: float, limit: int) -> tuple[RequestLog, Token]:
    """Begin a request; its debug records are sampled with probability ``sample_rate``."""
    state = RequestLog(sampled=sample_rate > 0 and random.random() < sample_rate, limit=limit)
    return state, _current.set(state)


def finish(
    token: Token | None,
    error: bool,
    write: Callable[[Record], None],
    state: RequestLog | None = None,
) -> RequestLog | None:
    """End ``state`` (default: the current request): write its buffer out on error, else drop it.

    A request may end in another context than the one it started in (a FastAPI generator
    dependency runs its two halves in separate thread-pool calls): then the token cannot be reset,
    and the other context is left alone.
    """
    state = state or _current.get()
    if token is None:
        _current.set(None)
    else:
        with contextlib.suppress(ValueError):
            _current.reset(token)
    if state is not None:
        if error or state.error:
            state.release(write)
        state.buffer.clear()
    return state
