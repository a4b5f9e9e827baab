"""Custom CloudWatch metrics: EMF (stdout, file, agent), PutMetricData and Prometheus outputs.

Nothing is recorded until metrics are configured, by ``configure()`` or by ``AWS_EMF_NAMESPACE`` /
``POWERTOOLS_METRICS_NAMESPACE`` in the environment: there is no namespace to guess, and an app
that never configures metrics must not start sending them. Until then a recorded value is refused:
counted (``metrics.dropped.not_configured``), one warning per minute says how to configure, and
``flush()`` returns False. The middleware's RED metrics stay off quietly.

Recording never raises into the application (unless ``configure(strict=True)``): rejected input is
counted in ``tracekit._shared.stats`` and logged with a message naming the metric.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from tracekit._shared import hooks, stats
from tracekit.metrics import red
from tracekit.metrics.model import Kind
from tracekit.metrics.recorder import Recorder, Scope, current_scope
from tracekit.metrics.sinks import Output
from tracekit.metrics.spec import UNITS, MetricError

__all__ = [
    "UNITS",
    "MetricError",
    "Scope",
    "configure",
    "count",
    "current_scope",
    "flush",
    "gauge",
    "is_configured",
    "observe",
    "record_request",
    "scope",
    "shutdown",
    "timed",
    "timing",
]

_F = TypeVar("_F", bound=Callable[..., Any])


class _State:
    recorder: Recorder | None = None
    refused = 0
    """Values refused since the last ``flush()`` because metrics were not configured."""
    env_checked = False
    atexit_registered = False


_state = _State()


def configure(
    namespace: str | None = None,
    outputs: Sequence[str | Output] | None = None,
    default_dimensions: Mapping[str, str] | None = None,
    *,
    service: str | None = None,
    flush_interval: float | None = None,
    max_dimension_combinations: int = 100,
    scope_flush: bool = True,
    strict: bool = False,
    env: Mapping[str, str] | None = None,
) -> None:
    """Set up metrics; replaces (after flushing) any previous configuration.

    ``outputs``: ``"stdout"``, ``"file:PATH"``, ``"agent"`` (``AWS_EMF_AGENT_ENDPOINT`` or
    tcp://127.0.0.1:25888), ``"tcp://host:port"``, ``"udp://host:port"``, ``"cloudwatch"``
    (PutMetricData), ``"prometheus"``, or an ``Output`` object. The default follows
    ``AWS_EMF_ENVIRONMENT`` and Lambda detection: stdout in Lambda, the agent elsewhere.
    ``default_dimensions`` default to ``{"ServiceName": service}`` when a service name is known;
    without ``service`` it is the shared one, read at each flush (``tracekit.configure(service=...)``
    may come later).
    ``scope_flush=False`` merges finished scopes into the interval flush (fewer documents).
    """
    from tracekit.metrics.setup import build_recorder

    recorder = build_recorder(
        os.environ if env is None else env,
        namespace=namespace,
        outputs=outputs,
        default_dimensions=default_dimensions,
        service=service,
        flush_interval=flush_interval,
        max_combinations=max_dimension_combinations,
        scope_flush=scope_flush,
        strict=strict,
    )
    _install(recorder)


def _install(recorder: Recorder | None, timeout: float = 2.0) -> None:
    old, _state.recorder = _state.recorder, recorder
    _state.env_checked = True
    if old is not None:
        old.close(timeout)
    if recorder is not None and not _state.atexit_registered:
        atexit.register(shutdown)
        _state.atexit_registered = True


def _active() -> Recorder | None:
    if _state.recorder is None and not _state.env_checked:
        _state.env_checked = True
        if os.environ.get("AWS_EMF_NAMESPACE") or os.environ.get("POWERTOOLS_METRICS_NAMESPACE"):
            try:
                configure()
            except Exception as exc:  # a bad environment must not break the app
                stats.report("metrics.configure", exc)
    return _state.recorder


def is_configured() -> bool:
    return _active() is not None


def count(
    name: str,
    value: float = 1,
    unit: str = "Count",
    dimensions: Mapping[str, str] | None = None,
    resolution: int = 60,
) -> None:
    """Add to a counter; a flush emits the sum of the values recorded since the last one."""
    _record("count", name, value, unit, dimensions, resolution)


def gauge(
    name: str,
    value: float,
    unit: str = "None",
    dimensions: Mapping[str, str] | None = None,
    resolution: int = 60,
) -> None:
    """Record a level (queue depth, pool size); every value is kept."""
    _record("gauge", name, value, unit, dimensions, resolution)


def observe(
    name: str,
    value: float,
    unit: str = "Milliseconds",
    dimensions: Mapping[str, str] | None = None,
    resolution: int = 60,
) -> None:
    """Record one observation of a distribution (latency, size): CloudWatch keeps percentiles."""
    _record("observe", name, value, unit, dimensions, resolution)


timing = observe


def _record(
    kind: Kind, name: str, value: float, unit: str, dimensions: Mapping[str, str] | None, resolution: int
) -> None:
    recorder = _state.recorder or _active()
    if recorder is None:
        _refuse(name)
    else:
        recorder.record(kind, name, value, unit, dimensions, resolution)


def _refuse(name: str) -> None:
    """A value recorded before metrics are configured: never dropped silently."""
    _state.refused += 1
    stats.incr("metrics.dropped.not_configured")
    stats.warn_once_per_interval(
        "metrics.not_configured",
        "tracekit: metric %r was not recorded: metrics are not configured; call "
        "tracekit.metrics.configure(namespace=\"MyApp\") or set AWS_EMF_NAMESPACE",
        str(name)[:100],
    )


def scope(
    dimensions: Mapping[str, str] | None = None,
    properties: Mapping[str, object] | None = None,
    flush: bool | None = None,
) -> Scope | _NullScope:
    """A context manager isolating one request's or invocation's metrics and dimensions."""
    recorder = _active()
    if recorder is None:
        return _NullScope()
    return Scope(recorder, dimensions, properties, flush)


class _NullScope:
    """What ``scope()`` returns while metrics are not configured: accepts and ignores everything."""

    def add_dimension(self, key: str, value: str) -> None:
        return None

    def set_property(self, key: str, value: object) -> None:
        return None

    def __enter__(self) -> _NullScope:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def flush(timeout: float = 2.0) -> bool:
    """Emit pending metrics and wait up to ``timeout`` s for delivery; never raises.

    False when something was not delivered, including values refused before ``configure``."""
    recorder = _state.recorder
    if recorder is None:
        refused, _state.refused = _state.refused, 0
        return refused == 0
    try:
        return recorder.flush(timeout)
    except Exception as exc:
        stats.report("metrics.flush", exc)
        return False


def shutdown(timeout: float = 2.0) -> None:
    """Flush and stop outputs (registered at exit); metrics are unconfigured afterwards."""
    try:
        _install(None, timeout)
    except Exception as exc:
        stats.report("metrics.shutdown", exc)


class timed:  # used as ``@timed(...)`` and ``with timed(...)``
    """Time a block or every call of a function into ``observe(name, ms)``."""

    def __init__(
        self,
        name: str,
        dimensions: Mapping[str, str] | None = None,
        unit: str = "Milliseconds",
        resolution: int = 60,
    ) -> None:
        self.name, self.dimensions, self.unit, self.resolution = name, dimensions, unit, resolution
        self._scale = _TIME_SCALE.get(unit, 1000.0) if isinstance(unit, str) else 1000.0

    def _record(self, start: float) -> None:
        value = (time.perf_counter() - start) * self._scale
        observe(self.name, value, self.unit, self.dimensions, self.resolution)

    def __enter__(self) -> timed:
        _open_timers.set((*_open_timers.get(), (self, time.perf_counter())))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        starts = _open_timers.get()
        for index in range(len(starts) - 1, -1, -1):  # the innermost block of this instance
            if starts[index][0] is self:
                _open_timers.set(starts[:index] + starts[index + 1 :])
                self._record(starts[index][1])
                return

    def __call__(self, func: _F) -> _F:
        import inspect

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await func(*args, **kwargs)
                finally:
                    self._record(start)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self._record(start)

        return wrapper  # type: ignore[return-value]


_TIME_SCALE = {"Seconds": 1.0, "Milliseconds": 1000.0, "Microseconds": 1_000_000.0}
_open_timers: contextvars.ContextVar[tuple[tuple[timed, float], ...]] = contextvars.ContextVar(
    "tracekit_open_timers", default=()
)
"""Start times of the ``with timed(...)`` blocks open in this thread/task: one shared instance can
time concurrent blocks. One variable for all timers: a variable per instance would stay in the
context for good, one per ``with`` statement."""


def record_request(route: str, method: str, status: int, duration_ms: float) -> None:
    """RED metrics for one request: count, 4xx, 5xx and latency per route and method.

    Recorded in the root scope (aggregated, flushed on the interval and by ``flush()``).
    Never raises.
    """
    recorder = _state.recorder
    if recorder is None:
        return
    try:
        red.record(recorder, route, method, status, duration_ms)
    except Exception as exc:  # on the request path: never raise
        stats.report("metrics.record_request", exc)


hooks.register_metrics(hooks.MetricHooks(record_request, scope, count, flush, is_configured))
