"""RED metrics (rate, errors, duration) per route template and method, for the web and Lambda hooks.

The series keys of a route are built once; after that a request costs one dict lookup and four
appends to the root scope.
"""

from __future__ import annotations

from tracekit.metrics import names, spec
from tracekit.metrics.recorder import Recorder, SeriesKey

_MAX_ROUTES = 1000


def record(recorder: Recorder, route: str, method: str, status: int, duration_ms: float) -> None:
    """Four appends to the root scope; error counters get 0 too: alarms see 0, not missing data."""
    keys = recorder.red_keys.get((route, method))
    if keys is None:
        keys = _keys(recorder, route, method)
    if duration_ms.__class__ not in (int, float) or not 0 <= duration_ms < spec.VALUE_LIMIT:
        recorder.invalid(
            f"record_request({route!r}, {method!r}): duration_ms {duration_ms!r} is not valid: "
            "expected a finite number >= 0"
        )
        return
    if status.__class__ is not int:
        recorder.invalid(
            f"record_request({route!r}, {method!r}): status {status!r} is not valid: "
            "expected an int HTTP status"
        )
        return
    root = recorder.root
    root.add(keys[0], 1, True)
    root.add(keys[1], 1 if 400 <= status < 500 else 0, True)
    root.add(keys[2], 1 if status >= 500 else 0, True)
    root.add(keys[3], duration_ms)


def _keys(recorder: Recorder, route: str, method: str) -> tuple[SeriesKey, ...]:
    if not recorder.red_keys:
        for metric in names.RED:
            recorder.admit(metric.name, metric.unit, 60, "observe" if metric is names.LATENCY else "count")
    dims = ((names.METHOD, _dimension(method)), (names.ROUTE, _dimension(route)))
    keys = tuple((metric.name, dims) for metric in names.RED)
    if len(recorder.red_keys) < _MAX_ROUTES:  # the cardinality guard folds the rest at flush
        recorder.red_keys[(route, method)] = keys
    return keys


def _dimension(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return text[: spec.MAX_DIMENSION_VALUE] or "unknown"
