"""The admin HTTP port: ``/health`` (for ECS healthChecks), ``/metrics`` (Prometheus) and, in local
mode, the trace viewer at ``/`` (:mod:`tracekit.sidecar.viewer`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tracekit._shared import stats
from tracekit._shared.redaction import mask_urls
from tracekit.sidecar.httpserver import BoundedHandler, BoundedHTTPServer, HTTPListener, send_reply
from tracekit.sidecar.viewer.api import Viewer
from tracekit.sidecar.viewer.server import answer

LABELLED = {"dropped": "reason", "rejected": "reason", "retries": "reason", "unprocessed": "code",
            "decided": "decision", "kept_by": "rule"}
"""Counter families whose last key part becomes a label, e.g. ``...dropped.buffer_full``."""
_NAME = re.compile(r"[^a-zA-Z0-9_]")

Health = Callable[[], tuple[bool, dict[str, Any]]]
Gauges = Callable[[], dict[str, float]]


UDP_COUNTERS = ("sidecar.udp.received", "sidecar.udp.rejected.invalid_header",
                "sidecar.udp.rejected.missing_header", "sidecar.udp.rejected.empty_segment",
                "sidecar.udp.rejected.empty_datagram")
UPSTREAM_COUNTERS = tuple(
    f"sidecar.upstream.{name}" for name in (
        "sent", "batches", "retries.throttled", "retries.server_error", "retries.connection",
        "dropped.buffer_full", "dropped.rejected", "dropped.retries_exhausted", "dropped.shutdown",
        "dropped.unconfirmed_at_exit",
    )
)  # fmt: skip
"""Exported from the start at 0: a series that first appears at 1 hides that increase from
Prometheus' ``increase()``/``rate()``, so an alert on the first drops would never fire."""
GAUGE_PREFIX = "tracekit_sidecar_"
QUEUED_GAUGE = "queued_documents"
UPSTREAM_AGE_GAUGE = "upstream_last_success_age_seconds"
"""Seconds since X-Ray last answered: ``/health`` turns 503 when it passes ``--health-window``."""


def counter_name(key: str) -> str:
    """The Prometheus name of a stats counter, as scraped (prometheus_client adds ``_total``),
    e.g. ``sidecar.upstream.dropped.buffer_full`` -> ``tracekit_sidecar_upstream_dropped_total``."""
    return _family(key)[0] + "_total"


def gauge_name(gauge: str) -> str:
    return GAUGE_PREFIX + gauge
EMF_COUNTERS = tuple(
    f"sidecar.emf.{name}" for name in (
        "received", "accepted", "rejected.too_large", "rejected.out_of_window", "rejected.invalid_emf",
        "dropped.buffer_limit", "dropped.line_timeout", "connections.evicted", "upstream.sent",
        "upstream.dropped.buffer_full", "upstream.dropped.retries_exhausted", "upstream.dropped.shutdown",
        "upstream.dropped.rejected",
    )
)  # fmt: skip
OTLP_COUNTERS = tuple(
    f"sidecar.otlp.{name}" for name in (
        "requests.received", "requests.accepted", "requests.rejected.busy", "spans.received",
        "spans.rejected.buffer_full",
    )
)  # fmt: skip


class StatsCollector:
    """Expose ``tracekit._shared.stats`` counters under ``sidecar.`` and ``errors.`` plus live gauges."""

    def __init__(self, gauges: Gauges, declared: Iterable[str] = ()) -> None:
        self._gauges = gauges
        self._declared = tuple(declared)

    def declare(self, keys: Iterable[str]) -> None:
        """Export these counters at 0 too (a receiver added after the sidecar was built)."""
        self._declared += tuple(keys)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counts = dict.fromkeys(self._declared, 0)
        counts.update(stats.stats())
        families: dict[str, Any] = {}
        for key, value in sorted(counts.items()):
            if not key.startswith(("sidecar.", "errors.")):
                continue
            name, label, label_value = _family(key)
            family = families.get(name)
            if family is None:
                labels = [label] if label else []
                family = CounterMetricFamily(name, f"tracekit counter {name}", labels=labels)
                families[name] = family
            family.add_metric([label_value] if label else [], value)
        yield from families.values()
        for gauge, level in self._gauges().items():
            yield GaugeMetricFamily(gauge_name(gauge), gauge.replace("_", " "), value=level)


def _family(key: str) -> tuple[str, str, str]:
    """``sidecar.upstream.dropped.buffer_full`` -> (name, "reason", "buffer_full")."""
    if key.startswith("errors."):
        return "tracekit_errors", "key", key[len("errors.") :]
    parts = key.split(".")
    if len(parts) >= 3 and parts[-2] in LABELLED:
        return "tracekit_" + _NAME.sub("_", "_".join(parts[:-1])), LABELLED[parts[-2]], parts[-1]
    return "tracekit_" + _NAME.sub("_", "_".join(parts)), "", ""


class AdminServer(HTTPListener):
    """Serves ``/health`` (200 or 503 with a JSON reason), ``/metrics`` and the ``viewer`` if given."""

    name = "admin"

    def __init__(
        self, address: tuple[str, int], health: Health, registry: Any, viewer: Viewer | None = None
    ) -> None:
        self.health = health
        self.registry = registry
        self.viewer = viewer
        self._server = BoundedHTTPServer(address, _Handler, "admin", self, max_connections=16)


class _Handler(BoundedHandler):
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        admin: AdminServer = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == "/health":
            ok, body = admin.health()
            text = mask_urls(json.dumps(body, default=str))  # errors may quote an endpoint URL
            self._reply(200 if ok else 503, "application/json", text.encode())
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self._reply(200, CONTENT_TYPE_LATEST, generate_latest(admin.registry))
        elif admin.viewer is None or not answer(self, admin.viewer):
            self._reply(404, "text/plain", b"not found: try /health or /metrics\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        send_reply(self, (status, {"Content-Type": content_type}, body))
