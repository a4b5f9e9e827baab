"""The same metrics through prometheus-client, with a ``/metrics`` app for WSGI and ASGI servers.

Counters become ``Counter``, gauges ``Gauge``, observations ``Histogram``, named as Prometheus
expects: snake_case, time in seconds (``latency_seconds``), sizes in bytes (``payload_bytes``),
counters ending in ``_total``; dimensions become snake_case labels. A scrape first flushes what
the recorder holds outside any scope (to every output, so nothing counts twice): ``/metrics``
shows the values as of the scrape, not as of the last interval flush.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import make_asgi_app as _make_asgi_app
from prometheus_client import make_wsgi_app as _make_wsgi_app
from prometheus_client.metrics_core import Metric

from tracekit._shared import stats
from tracekit.metrics.model import Batch, Series

_INVALID = re.compile(r"[^a-zA-Z0-9_]+")
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SCALE = {"Seconds": 1.0, "Milliseconds": 1e-3, "Microseconds": 1e-6, "Bytes": 1.0,
          "Kilobytes": 1e3, "Megabytes": 1e6, "Gigabytes": 1e9, "Terabytes": 1e12}
"""CloudWatch units converted to Prometheus' base units (seconds, bytes)."""
_SUFFIX = {"Seconds": "seconds", "Milliseconds": "seconds", "Microseconds": "seconds", "Bytes": "bytes",
           "Kilobytes": "bytes", "Megabytes": "bytes", "Gigabytes": "bytes", "Terabytes": "bytes",
           "Percent": "percent"}
_default_registry: CollectorRegistry | None = None
_registry_lock = threading.Lock()


def default_registry() -> CollectorRegistry:
    """tracekit's own registry (not prometheus-client's global one, to avoid name clashes)."""
    global _default_registry
    with _registry_lock:
        if _default_registry is None:
            _default_registry = CollectorRegistry()
        return _default_registry


class PrometheusOutput:
    """Updates prometheus-client metrics from each flushed batch; registered in ``registry`` as one
    collector that asks the recorder for pending values at each scrape."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or default_registry()
        self._metrics: dict[str, tuple[Any, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._pending: Callable[[], None] | None = None
        self.registry.register(self)

    def bind(self, emit_pending: Callable[[], None]) -> None:
        """The recorder's way to flush what it holds; called at each scrape."""
        self._pending = emit_pending

    def describe(self) -> list[Metric]:
        """Nothing known ahead: metrics appear as they are recorded (prometheus-client asks)."""
        return []

    def collect(self) -> Iterable[Metric]:
        if self._pending is not None:
            try:
                self._pending()
            except Exception as exc:  # a scrape shows what is there
                stats.report("metrics.prometheus.scrape", exc)
        with self._lock:
            known = [metric for metric, _ in self._metrics.values()]
        for metric in known:
            yield from metric.collect()

    def emit(self, batch: Batch) -> None:
        for series, values in batch.items():
            try:
                self._apply(series, values)
            except Exception as exc:  # one bad series must not cost the rest of the batch
                stats.report("metrics.prometheus", exc)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        """Leave the registry: a new configuration brings its own output."""
        self._pending = None
        with contextlib.suppress(KeyError):  # already gone
            self.registry.unregister(self)

    def _apply(self, series: Series, values: list[float]) -> None:
        labels = tuple(prometheus_name(k) for k, _ in series.dimensions)
        metric = self._metric(series, labels)
        if metric is None:
            return
        child = metric.labels(*(v for _, v in series.dimensions)) if labels else metric
        scale = _SCALE.get(series.unit, 1.0)
        if series.kind == "count":
            child.inc(sum(values))  # a negative sum raises: Prometheus counters never go down
        elif series.kind == "gauge":
            child.set(values[-1] * scale)
        else:
            for value in values:
                child.observe(value * scale)

    def _metric(self, series: Series, labels: tuple[str, ...]) -> Any:
        name = metric_name(series.name, series.unit)
        with self._lock:
            known = self._metrics.get(name)
            if known is None:
                kind = {"count": Counter, "gauge": Gauge, "observe": Histogram}[series.kind]
                metric = kind(name, f"{series.name} ({series.unit})", labels, registry=None)
                known = self._metrics[name] = (metric, labels)
        if known[1] != labels:
            stats.report(
                "metrics.prometheus.labels",
                msg=f"tracekit: Prometheus metric {name!r} has labels {list(known[1])}; "
                f"a series with {list(labels)} was skipped (use the same dimensions per metric)",
            )
            return None
        return known[0]


def prometheus_name(text: str) -> str:
    """A snake_case Prometheus metric or label name: ``PaymentLatency`` -> ``payment_latency``,
    ``HTTPQueue.depth`` -> ``http_queue_depth``."""
    name = _INVALID.sub("_", _WORD_START.sub("_", text)).strip("_").lower()
    return name if name and not name[0].isdigit() else f"_{name}"


def metric_name(name: str, unit: str) -> str:
    """The name with its unit suffix (prometheus-client adds ``_total`` to counters)."""
    base = prometheus_name(name)
    suffix = _SUFFIX.get(unit)
    return f"{base}_{suffix}" if suffix and not base.endswith(suffix) else base


def wsgi_app(registry: CollectorRegistry | None = None) -> Any:
    """A WSGI app serving the Prometheus text format."""
    return _make_wsgi_app(registry or default_registry())


def asgi_app(registry: CollectorRegistry | None = None) -> Any:
    """An ASGI app serving the Prometheus text format."""
    return _make_asgi_app(registry or default_registry())


def mount_flask(
    app: Any, path: str = "/metrics", registry: CollectorRegistry | None = None
) -> None:
    """Serve ``path`` from the Flask app (dispatched before Flask's routing)."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {path: wsgi_app(registry)})


def mount_fastapi(
    app: Any, path: str = "/metrics", registry: CollectorRegistry | None = None
) -> None:
    """Serve ``path`` from a FastAPI/Starlette application.

    A route, not ``app.mount``: a mount answers ``/metrics`` with a redirect to ``/metrics/``.
    """
    app.add_route(path, _AsgiEndpoint(asgi_app(registry)), include_in_schema=False)


class _AsgiEndpoint:
    """Starlette runs a route endpoint that is not a function as a raw ASGI app (as wanted here);
    prometheus-client's ASGI app is a function, so it is wrapped in this object."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
