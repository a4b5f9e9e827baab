"""How the integrations reach logs and metrics without importing them.

The web middleware and the Lambda decorator add per-request log state and metrics when the
application uses ``tracekit.logs`` / ``tracekit.metrics``, and must cost nothing (not even the
import, a few ms of a Lambda cold start) when it does not. So those two packages register their
entry points here when they are imported, and the integrations call through :data:`logs` and
:data:`metrics`, which stay ``None`` until then.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple


class LogHooks(NamedTuple):
    """Set by ``tracekit.logs``: the per-request log state (debug buffer, ``request finished``)."""

    request_started: Callable[[], None]
    request_finished: Callable[..., None]
    request_scope: Callable[..., AbstractContextManager[Any]]
    flush: Callable[[float], bool]
    """Send the records waiting for OTLP export within the timeout (seconds)."""


class MetricHooks(NamedTuple):
    """Set by ``tracekit.metrics``: RED metrics, per-invocation scopes, counters and flushing."""

    record_request: Callable[[str, str, int, float], None]
    scope: Callable[..., AbstractContextManager[Any]]
    add_count: Callable[..., None]
    flush: Callable[[float], bool]
    is_configured: Callable[[], bool]


logs: LogHooks | None = None
metrics: MetricHooks | None = None


def register_logs(entry_points: LogHooks) -> None:
    global logs
    logs = entry_points


def register_metrics(entry_points: MetricHooks) -> None:
    global metrics
    metrics = entry_points


__all__ = ["LogHooks", "MetricHooks", "logs", "metrics", "register_logs", "register_metrics"]
