"""Self-telemetry: counters and rate-limited logging for tracekit's own failures.

Telemetry must never break the application, so every failure path inside tracekit ends here:
it is counted (``tracekit.stats()``) and logged at most once per ``LOG_INTERVAL`` per key.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from tracekit._shared.redaction import mask_urls

logger = logging.getLogger("tracekit")

LOG_INTERVAL = 60.0
"""Seconds between two log lines about the same problem."""

_P = ParamSpec("_P")
_R = TypeVar("_R")

_counts: Counter[str] = Counter()
_last_logged: dict[str, float] = {}
_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    """A fork while another thread held the lock would leave the child's copy locked for good."""
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def incr(name: str, n: int = 1) -> None:
    """Add ``n`` to the counter ``name`` (thread-safe)."""
    with _lock:
        _counts[name] += n


def stats() -> dict[str, int]:
    """A snapshot of tracekit's own counters (spans exported, dropped by reason, errors...)."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Clear all counters and the log rate limiter (for tests)."""
    with _lock:
        _counts.clear()
        _last_logged.clear()


def warn_once_per_interval(key: str, msg: str, *args: object, exc: BaseException | None = None) -> None:
    """Log a warning about ``key`` unless one was logged less than ``LOG_INTERVAL`` ago.

    One line: the message should name the exception; its stack is added only while the
    ``tracekit`` logger is at DEBUG (an unreachable agent is an expected condition, not a bug).
    """
    now = time.monotonic()
    with _lock:
        last = _last_logged.get(key)
        if last is not None and now - last < LOG_INTERVAL:
            return
        _last_logged[key] = now
    with contextlib.suppress(Exception):  # a broken logging setup must not escape either
        stack = exc if logger.isEnabledFor(logging.DEBUG) else None
        logger.warning("%s", mask_urls(msg % args if args else msg), exc_info=stack)


def report(key: str, exc: BaseException | None = None, msg: str | None = None) -> None:
    """Count a failure under ``errors.<key>`` and log it, rate-limited, in one line that names the
    exception (``msg``, else ``tracekit: <key> failed: <type>: <message>``)."""
    incr(f"errors.{key}")
    text = msg or (f"tracekit: {key} failed: {describe(exc)}" if exc else key)
    warn_once_per_interval(key, "%s", text, exc=exc)


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line (some messages span lines)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def guarded(key: str, default: Any = None) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorator: run the function; on any exception, ``report(key)`` and return ``default``."""

    def decorate(func: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(func)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                report(key, exc)
                return default  # type: ignore[no-any-return]

        return wrapper

    return decorate
