"""The recording core: specs checked once per metric, values appended per scope, flushes to outputs.

A ``Scope`` collects values for one request or invocation (found through a context variable, so
threads and asyncio tasks never mix their dimensions); the recorder's root scope collects everything
recorded outside any scope and is flushed on an interval, at ``flush()`` and at exit.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, cast

from tracekit._shared import stats
from tracekit._shared.forking import reset_after_fork
from tracekit.metrics import spec
from tracekit.metrics.model import Batch, Dimensions, Kind, Series
from tracekit.metrics.sinks import Output
from tracekit.metrics.spec import MetricError

OVERFLOW = "__overflow__"
"""The value every non-default dimension takes once a metric has too many combinations."""

MAX_NAMES = 10_000
"""Distinct metric names per recorder: the specs kept per name must not grow without bound."""
MAX_SHAPES = 1000
"""Cached scope shapes per recorder; shapes past it are described on every flush (slower, same)."""
SeriesKey = str | tuple[str, Dimensions]
"""The metric name alone when no call dimensions were given (cheaper to hash), else with them."""
_Shape = tuple[list[Series], dict[str, Any]]
_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "tracekit_metrics_scope", default=None
)


class Scope:
    """Values recorded for one unit of work, with its own dimensions and document properties."""

    def __init__(
        self,
        recorder: Recorder,
        dimensions: Mapping[str, str] | None = None,
        properties: Mapping[str, object] | None = None,
        flush: bool | None = None,
        max_values: int = 100_000,
    ) -> None:
        self.recorder = recorder
        self.dimensions: dict[str, str] = {}
        pairs = _items(recorder, properties, "scope properties")
        self.properties: dict[str, object] = {str(key): value for key, value in pairs}
        self.flush_on_exit = recorder.scope_flush if flush is None else flush
        self._data: dict[SeriesKey, list[float]] = {}
        self._size = 0
        self._max_values = max_values
        self._lock = threading.Lock()
        self._token: contextvars.Token[Scope | None] | None = None
        self._base: Dimensions | None = None
        self._base_of: dict[str, str] | None = None
        for key, value in _items(recorder, dimensions, "scope dimensions"):
            self.add_dimension(key, value)

    def add_dimension(self, key: str, value: str) -> None:
        """A dimension for every metric of this scope (checked once per pair, bad ones reported)."""
        recorder = self.recorder
        known = (
            key.__class__ is str and value.__class__ is str and (key, value) in recorder.valid_pairs
        )
        if (
            not known
            or len(self.dimensions) + len(recorder.default_dimensions) >= spec.MAX_DIMENSIONS
        ):
            inherited = len(recorder.default_dimensions) + len(self.dimensions)
            problem = spec.check_name(key, "scope dimension name") or spec.check_dimensions(
                "<scope>", {key: value}, inherited
            )
            if problem:
                recorder.invalid(problem)
                return
            if len(recorder.valid_pairs) < 10_000:
                recorder.valid_pairs.add((key, value))
        self.dimensions[key] = value
        self._base = None

    def set_property(self, key: str, value: object) -> None:
        """A top-level EMF member that is searchable in Logs Insights but is not a metric."""
        self.properties[str(key)] = value

    def add(self, key: SeriesKey, value: float, summed: bool = False) -> None:
        """Append a value; ``summed`` ones (counters) are added in place, so they cost no memory."""
        with self._lock:
            values = self._data.get(key)
            if values is None:
                self._data[key] = [value]
            elif summed:
                values[0] += value
                return
            else:
                values.append(value)
            self._size += 1
            if self._size < self._max_values:
                return
        self._full()

    @property
    def base_dimensions(self) -> Dimensions:
        """Default and scope dimensions, sorted; cached until ``add_dimension`` or a new service name
        (a new ``default_dimensions`` dict) changes them."""
        defaults = self.recorder.default_dimensions
        if self._base is None or self._base_of is not defaults:
            merged = {**defaults, **self.dimensions}
            self._base, self._base_of = tuple(sorted(merged.items())), defaults
        return self._base

    def extend(self, key: SeriesKey, values: list[float]) -> None:
        with self._lock:
            self._data.setdefault(key, []).extend(values)
            self._size += len(values)

    def drain(self) -> dict[SeriesKey, list[float]]:
        with self._lock:
            data, self._data, self._size = self._data, {}, 0
        return data

    def _full(self) -> None:
        if self is self.recorder.root:
            self.recorder.request_flush()
        if self._size > 2 * self._max_values:
            dropped = len(self.drain())
            stats.incr("metrics.dropped.scope_full", dropped)
            stats.warn_once_per_interval(
                "metrics.scope_full",
                "tracekit: a metrics scope held over %d values; its %d series were dropped",
                2 * self._max_values,
                dropped,
            )

    def __enter__(self) -> Scope:
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # exited in another context (FastAPI generator dependencies)
                stats.incr("metrics.scope.other_context")
        try:
            self.close()
        except Exception as error:  # never into user code
            stats.report("metrics.scope", error)

    def close(self) -> None:
        """Emit (``flush_on_exit``) or hand the values to the enclosing scope."""
        if self.flush_on_exit:
            self.recorder.emit(self, trace_property())
        else:
            target = _current.get() or self.recorder.root
            for key, values in self.drain().items():
                name, dims = split_key(key)
                merged = {**self.dimensions, **dict(dims or ())}
                target.extend((name, tuple(sorted(merged.items()))) if merged else name, values)


class Recorder:
    """Configured state: namespace, defaults, outputs, spec cache and the cardinality guard."""

    def __init__(
        self,
        namespace: str,
        outputs: Sequence[Output],
        default_dimensions: Mapping[str, str],
        *,
        max_combinations: int = 100,
        flush_interval: float = 10.0,
        scope_flush: bool = True,
        strict: bool = False,
        follow_defaults: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        """``follow_defaults``: called at each flush for the default dimensions, so metrics configured
        before ``tracekit.configure(service=...)`` still carry the service name set there."""
        problem = spec.check_namespace(namespace) or spec.check_dimensions(
            "<default dimensions>", default_dimensions
        )
        if problem:
            raise MetricError(problem)
        self.namespace = namespace
        self.outputs = list(outputs)
        self.default_dimensions = dict(default_dimensions)
        self.scope_flush = scope_flush
        self.strict = strict
        self._follow_defaults = follow_defaults
        self.guard = CardinalityGuard(max_combinations, self.default_dimensions)
        self.root = Scope(self, flush=True)
        for output in self.outputs:  # pulled outputs (Prometheus) flush pending values per scrape
            bind = getattr(output, "bind", None)
            if callable(bind):
                bind(self.emit_pending)
        self._specs: set[tuple[str, str, int, Kind]] = set()
        self._by_name: dict[str, tuple[str, int, Kind]] = {}
        self._shapes: dict[tuple[Dimensions, tuple[SeriesKey, ...]], _Shape] = {}
        self.red_keys: dict[tuple[str, str], tuple[SeriesKey, ...]] = {}
        self._valid_dims: set[Dimensions] = set()
        self.valid_pairs: set[tuple[str, str]] = set()
        self._emit_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._interval = flush_interval
        self._thread: threading.Thread | None = None
        if flush_interval > 0:
            self._start_interval()
        reset_after_fork(self)

    def _start_interval(self) -> None:
        self._thread = threading.Thread(
            target=self._interval_loop, name="tracekit-metrics-flush", daemon=True
        )
        self._thread.start()

    def forked(self) -> None:
        """In a forked child (gunicorn --preload, multiprocessing): locks may be held by parent
        threads that are gone, the interval thread did not survive, and the root scope's values are
        the parent's to flush (here they would count twice)."""
        self._emit_lock = threading.Lock()
        self.guard.forked()
        self.root = Scope(self, flush=True)
        self._wake = threading.Event()
        if self._thread is not None and not self._stopped.is_set():
            self._start_interval()

    def record(
        self,
        kind: Kind,
        name: str,
        value: float,
        unit: str,
        dimensions: Mapping[str, str] | None,
        resolution: int,
    ) -> None:
        """Check (cached) and append one value to the current scope; errors are reported."""
        scope = _current.get() or self.root
        try:
            if (name, unit, resolution, kind) not in self._specs:
                self.admit(name, unit, resolution, kind)
            if (
                value.__class__ not in (int, float)
                or not -spec.VALUE_LIMIT < value < spec.VALUE_LIMIT
            ):
                raise MetricError(spec.check_value(name, value) or f"metric {name!r}: bad value")
            dims = self._dims_key(name, dimensions, scope) if dimensions else None
        except MetricError as exc:
            self.invalid(str(exc))
            return
        except Exception as exc:  # unhashable name, unit or resolution, odd dimensions...
            self.invalid(_explain(name, unit, resolution) or f"metric {name!r}: {exc!r}")
            return
        scope.add(name if dims is None else (name, dims), value, kind == "count")

    def invalid(self, message: str) -> None:
        """A rejected input: raised in strict mode, otherwise counted and logged (rate-limited)."""
        if self.strict:
            raise MetricError(message)
        self.rejected(message)

    @staticmethod
    def rejected(message: str) -> None:
        """Count and log a rejection; also in strict mode where raising would lose a whole flush."""
        stats.incr("metrics.rejected")
        stats.warn_once_per_interval(f"metrics.rejected:{message[:60]}", "tracekit: %s", message)

    def admit(self, name: str, unit: str, resolution: int, kind: Kind) -> None:
        problem = (
            spec.check_name(name)
            or spec.check_unit(name, unit)
            or spec.check_resolution(name, resolution)
        )
        if problem:
            raise MetricError(problem)
        if name not in self._by_name and len(self._by_name) >= MAX_NAMES:
            raise MetricError(
                f"metric {name!r}: over {MAX_NAMES} distinct metric names; put the varying part "
                "(a user or order id?) in a dimension or a property instead of the name"
            )
        known = self._by_name.setdefault(name, (unit, resolution, kind))
        if known != (unit, resolution, kind):
            raise MetricError(
                f"metric {name!r} was first recorded as {known[2]} in {known[0]} at resolution "
                f"{known[1]}; it cannot also be {kind} in {unit} at resolution {resolution}"
            )
        self._specs.add((name, unit, resolution, kind))

    def _dims_key(self, name: str, dimensions: Mapping[str, str], scope: Scope) -> Dimensions:
        try:
            key = tuple(sorted(dimensions.items()))
        except (TypeError, AttributeError):
            raise MetricError(_dimensions_problem(name, dimensions)) from None
        if key not in self._valid_dims:
            inherited = len(self.default_dimensions) + len(scope.dimensions)
            problem = spec.check_dimensions(name, dimensions, inherited)
            if problem:
                raise MetricError(problem)
            if len(self._valid_dims) < 100_000:
                self._valid_dims.add(key)
        return key

    def batch(self, scope: Scope, properties: Mapping[str, object] | None = None) -> Batch | None:
        """Drain ``scope`` into a batch with full (default + scope + call) dimensions.

        A scope's shape (its dimensions and series keys) usually repeats from one invocation to the
        next, so the series descriptions are built once per shape and reused with their memo.
        """
        data = scope.drain()
        if not data:
            return None
        if self._follow_defaults is not None:
            self._refresh_defaults(self._follow_defaults())
        props = {**scope.properties, **properties} if properties else scope.properties
        stamp = int(time.time() * 1000)
        base = scope.base_dimensions
        shape_key = (base, tuple(data))
        shape = self._shapes.get(shape_key)
        if shape is not None:
            return Batch(self.namespace, stamp, shape[0], list(data.values()), props, shape[1])
        described = [self._describe(key, base) for key in data]
        if len(set(described)) == len(described) and None not in described:
            series = cast("list[Series]", described)
            memo: dict[str, Any] = {}
            if len(self._shapes) < MAX_SHAPES:
                self._shapes[shape_key] = (series, memo)
            return Batch(self.namespace, stamp, series, list(data.values()), props, memo)
        merged: dict[Series, list[float]] = {}
        for item, values in zip(described, data.values(), strict=True):
            if item is not None:  # folded overflow and repeated dimensions meet here
                merged.setdefault(item, []).extend(values)
        return Batch(self.namespace, stamp, list(merged), list(merged.values()), props)

    def _refresh_defaults(self, defaults: dict[str, str]) -> None:
        if defaults == self.default_dimensions:
            return
        problem = spec.check_dimensions("<default dimensions>", defaults)
        if problem:
            self.rejected(problem)
            return
        self.default_dimensions = defaults
        self.guard.keep(defaults)

    def _describe(self, key: SeriesKey, base: Dimensions) -> Series | None:
        """The series a scope key stands for, after the 30-dimension check and the guard."""
        name, call_dims = split_key(key)
        dims = base
        if call_dims is not None:
            dims = tuple(sorted({**dict(base), **dict(call_dims)}.items()))
            if len(dims) > spec.MAX_DIMENSIONS:  # the scope gained dimensions after recording
                inherited = len(dims) - len(call_dims)
                self.rejected(spec.check_dimensions(name, dict(call_dims), inherited) or name)
                return None
        unit, resolution, kind = self._by_name[name]
        return Series(name, unit, resolution, kind, self.guard.admit(name, dims))

    def emit(self, scope: Scope, properties: Mapping[str, object] | None = None) -> None:
        """Flush ``scope`` to every output; one failing output does not stop the others."""
        with self._emit_lock:
            batch = self.batch(scope, properties)
        if batch is None:
            return
        for output in self.outputs:
            try:
                output.emit(batch)
            except Exception as exc:  # an output bug must not reach the app
                stats.report(f"metrics.output.{type(output).__name__}", exc)

    def emit_pending(self) -> None:
        """Emit the root scope now (values recorded outside any scope since the last flush)."""
        self.emit(self.root)

    def flush(self, timeout: float) -> bool:
        """Emit the current scope (if any) and the root scope, then wait for the outputs."""
        current = _current.get()
        if current is not None and current is not self.root:
            self.emit(current, trace_property())
        self.emit(self.root)
        deadline = time.monotonic() + timeout
        ok = True
        for output in self.outputs:
            ok = output.flush(max(deadline - time.monotonic(), 0.0)) and ok
        return ok

    def close(self, timeout: float) -> None:
        """Flush and close every output within ``timeout`` in total (it bounds the exit delay)."""
        self._stopped.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        for output in self.outputs:
            output.close(max(deadline - time.monotonic(), 0.0))

    def request_flush(self) -> None:
        """The root scope is full: wake the interval flusher, or flush here when there is none."""
        if self._thread is not None:
            self._wake.set()
        else:
            self.emit(self.root)

    def _interval_loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                self.emit(self.root)
            except Exception as exc:  # keep the flusher alive
                stats.report("metrics.interval_flush", exc)


class CardinalityGuard:
    """Caps distinct dimension combinations per metric; later ones fold into ``OVERFLOW``."""

    def __init__(self, limit: int, defaults: Mapping[str, str]) -> None:
        self.limit = limit
        self._defaults = set(defaults.items())
        self._seen: dict[str, set[Dimensions]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def forked(self) -> None:
        self._lock = threading.Lock()

    def keep(self, defaults: Mapping[str, str]) -> None:
        """The default dimensions changed: overflow folding keeps the new ones."""
        self._defaults = set(defaults.items())

    def admit(self, name: str, dims: Dimensions) -> Dimensions:
        seen = self._seen.get(name)
        if seen is not None and dims in seen:  # the common case, without the lock
            return dims
        with self._lock:
            seen = self._seen.setdefault(name, set())
            if dims in seen:
                return dims
            if len(seen) < self.limit:
                seen.add(dims)
                return dims
            folded = tuple((k, v if (k, v) in self._defaults else OVERFLOW) for k, v in dims)
            seen.add(folded)
            first = name not in self._warned
            self._warned.add(name)
        stats.incr("metrics.cardinality_overflow")
        if first:
            stats.logger.warning(
                "tracekit: metric %r has more than %d dimension combinations; further ones are "
                "recorded as %r (raise max_dimension_combinations if this is expected)",
                name,
                self.limit,
                OVERFLOW,
            )
        return folded


def _explain(name: object, unit: object, resolution: object) -> str | None:
    checked = name if isinstance(name, str) else repr(name)
    return (
        spec.check_name(name)
        or spec.check_unit(checked, unit)
        or spec.check_resolution(checked, resolution)
    )


def _items(recorder: Recorder, mapping: object, what: str) -> list[tuple[Any, Any]]:
    """The pairs of a mapping the user passed; anything else is reported and ignored."""
    if mapping is None:
        return []
    try:
        return list(cast("Mapping[Any, Any]", mapping).items())
    except Exception:
        recorder.invalid(f"{what} {spec.short(mapping)} are not valid: expected a mapping")
        return []


def _dimensions_problem(name: str, dimensions: object) -> str:
    if isinstance(dimensions, Mapping):
        problem = spec.check_dimensions(name, dimensions)
        if problem:
            return problem
    return (
        f"metric {name!r}: dimensions {spec.short(dimensions)} are not valid: "
        "expected a mapping of str to str, e.g. {'Route': '/orders'}"
    )


def split_key(key: SeriesKey) -> tuple[str, Dimensions | None]:
    return (key, None) if isinstance(key, str) else key


def current_scope() -> Scope | None:
    return _current.get()


_get_current_span: Any = None


def trace_property() -> dict[str, object]:
    """``{"xray_trace_id": ...}`` when the current span is sampled, so metrics link to traces.

    OpenTelemetry is imported on first use, not when ``tracekit.metrics`` is imported.
    """
    global _get_current_span
    if _get_current_span is None:
        from opentelemetry.trace import get_current_span

        _get_current_span = get_current_span
    context = _get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        from tracekit.xray.ids import to_xray_trace_id

        return {"xray_trace_id": to_xray_trace_id(context.trace_id)}
    return {}
