"""Assemble the sidecar from its settings, run it until SIGTERM/SIGINT, flush within the deadline."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tracekit._shared import stats
from tracekit._shared.settings import ConfigError
from tracekit.sidecar.admin import (
    EMF_COUNTERS,
    OTLP_COUNTERS,
    QUEUED_GAUGE,
    UDP_COUNTERS,
    UPSTREAM_AGE_GAUGE,
    UPSTREAM_COUNTERS,
    AdminServer,
    StatsCollector,
)
from tracekit.sidecar.pipeline import Buffered, Listener, Service
from tracekit.sidecar.proxy import SamplingProxy, upstream_backend
from tracekit.sidecar.settings import MB, OPTIONS, Address, Settings, buffers, default_db_path, ecs_region
from tracekit.sidecar.store import LocalStore
from tracekit.sidecar.telemetry import TelemetryReporter
from tracekit.sidecar.udp import UdpListener
from tracekit.sidecar.viewer.api import Viewer
from tracekit.xray.sender import SegmentSender
from tracekit.xray.transports import SegmentSink

if TYPE_CHECKING:
    from tracekit.sampling.controlplane import ControlPlane
    from tracekit.sidecar.tail_sampling import TailSampler

logger = logging.getLogger("tracekit.sidecar")
L = TypeVar("L")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Sidecar:
    """Listeners feeding one sink, plus the admin server; ``run`` blocks until a stop signal."""

    def __init__(self, settings: Settings) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.settings = settings
        self.registry = CollectorRegistry()
        self._latency = Histogram(
            "tracekit_sidecar_batch_latency_seconds",
            "PutTraceSegments call latency",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._stopping = False
        self.sender: SegmentSender | None = None
        self.telemetry: TelemetryReporter | None = None
        self.sink: SegmentSink = self._build_sink()
        declared = UDP_COUNTERS + (UPSTREAM_COUNTERS if self.sender is not None else ())
        self.counters = StatsCollector(self._gauges, declared)
        self.registry.register(self.counters)
        try:
            self.tail = self._tail_sampler(self.sink) if settings.tail_sampling else None
            if self.tail is not None:
                self.sink = self.tail
            self.sampling: ControlPlane | None = None
            if self.sender is not None:
                backend = upstream_backend(self.sender.http)
            else:
                self.sampling = local_control_plane(settings)
                backend = self.sampling.handle
            self.proxy = _listen("tcp_address", lambda a: SamplingProxy(a, backend), settings)
            self.udp = _listen("udp_address", lambda a: UdpListener(a, self.sink, settings.receive_buffer),
                               settings)
            viewer = self._viewer()
            self.admin = _listen(
                "admin_address", lambda a: AdminServer(a, self.health, self.registry, viewer), settings
            )
        except BaseException:
            self.sink.close(0.0)  # the sidecar will not start: stop the sink's thread now
            raise
        self.listeners: list[Listener] = [self.udp, self.proxy]
        self.services: list[Service] = [s for s in (self.telemetry, self.tail) if s is not None]

    def add(self, listener: Listener) -> None:
        """Plug in another receiver (OTLP, EMF...) before ``start``; it feeds ``self.sink``."""
        self.listeners.append(listener)
        self.counters.declare({"emf": EMF_COUNTERS, "otlp": OTLP_COUNTERS}.get(listener.name, ()))

    def _build_sink(self) -> SegmentSink:
        s = self.settings
        if s.local:
            return LocalStore(self.db_path, s.local_retention, buffers(s).segments)
        region = s.region or ecs_region()
        if not region:
            raise ConfigError(
                "--region", None, "a region from --region, AWS_REGION or ECS task metadata"
            )
        self.sender = SegmentSender(
            region,
            s.endpoint_url,
            max_buffer_bytes=buffers(s).segments,
            workers=s.workers,
            batch_timeout=s.batch_timeout,
            retry_for=s.retry_for,
            stats_prefix="sidecar.upstream",
            on_batch=self._latency.observe,
        )
        self.telemetry = TelemetryReporter(self.sender.http, s.telemetry_interval)
        return self.sender

    def _tail_sampler(self, inner: SegmentSink) -> TailSampler:
        from tracekit.sidecar import tail_sampling

        return tail_sampling.from_settings(self.settings, inner)

    def _viewer(self) -> Viewer | None:
        """Local mode serves the trace viewer on the admin address."""
        if not self.settings.local:
            return None
        return Viewer(self.db_path, self.sampling.overview if self.sampling else None)

    @property
    def db_path(self) -> Path:
        return self.settings.local_db or default_db_path()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        for part in (*self.listeners, *self.services, self.admin):
            part.start()
        logger.info("sidecar started", extra={"fields": self.describe()})

    def describe(self) -> dict[str, Any]:
        """Where everything listens and the main limits (logged at start)."""
        info: dict[str, Any] = {
            "mode": "local" if self.settings.local else "xray",
            "admin": _fmt(self.admin.address()),
            "memory_limit_mb": self.settings.memory_limit,
            "buffer_limits_bytes": {k: v for k, v in buffers(self.settings)._asdict().items() if v},
            "tail_sampling": self.settings.tail_sampling,
            "udp_receive_buffer": self.udp.receive_buffer,
        }
        info.update({lst.name: _fmt(lst.address()) for lst in self.listeners})
        if self.sender is not None:
            info["region"] = self.sender.http.region
            info["endpoint"] = self.sender.http.base_url()
        if self.settings.local:
            info["db"] = str(self.db_path)
            info["viewer"] = f"http://{_fmt(self.admin.address())}/"
        return info

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT, then flush and log a summary; the exit status is 0."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        while not self._stop.wait(1.0):
            pass
        self.shutdown()
        return 0

    def shutdown(self) -> dict[str, Any]:
        """Stop receiving, flush within ``shutdown_timeout``, stop the rest; returns the summary."""
        self._stopping = True
        began = time.monotonic()
        logger.info("stopping: flushing %d buffered documents", self.sink.queued)
        for listener in self.listeners:  # the OTLP and EMF ones flush their own outputs first
            _stop_quietly(listener)
        self.sink.close(max(0.0, began + self.settings.shutdown_timeout - time.monotonic()))
        for service in (*self.services, self.admin):
            _stop_quietly(service)
        summary = summarize(stats.stats())
        summary["shutdown_seconds"] = round(time.monotonic() - began, 3)
        logger.info("sidecar stopped", extra={"fields": summary})
        return summary

    # -- health and gauges -----------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """200 while running and X-Ray answered within ``health_window``; the body says why not."""
        body: dict[str, Any] = {
            "mode": "local" if self.settings.local else "xray",
            "uptime_seconds": round(time.monotonic() - self._started, 1),
            "buffered_bytes": sum(self.buffered().values()),
            "buffer_limit_bytes": self.buffer_limit,
            "buffers": self.buffered(),
            "queued_documents": self.sink.queued,
        }
        ok, reason = self._judge(body)
        body.update(status="ok" if ok else "unhealthy", reason=reason)
        return ok, body

    def buffered(self) -> dict[str, int]:
        """Bytes held by each output buffer: the segments sink's and the listeners' own."""
        held = {"segments": self.sink.buffered_bytes}
        held.update({lst.name: lst.buffered_bytes for lst in self.listeners if isinstance(lst, Buffered)})
        return held

    @property
    def buffer_limit(self) -> int:
        """What :meth:`buffered` may hold in all: ``--memory-limit``, plus ``--tail-buffer`` with
        tail sampling (its traces are in the segments sink's count)."""
        tail = self.settings.tail_buffer if self.settings.tail_sampling else 0
        return (self.settings.memory_limit + tail) * MB

    def _judge(self, body: dict[str, Any]) -> tuple[bool, str]:
        if self._stopping:
            return False, "shutting down"
        if not self.udp.alive():
            return False, "the UDP listener stopped (see the logs)"
        if self.sender is None:
            return True, "local mode: storing documents in " + str(self.describe().get("db"))
        age = self._upstream_age()
        body["upstream_last_success_seconds_ago"] = None if age is None else round(age, 1)
        error = self.sender.last_error or (self.telemetry and self.telemetry.last_error)
        body["upstream_last_error"] = error
        window = self.settings.health_window
        if age is None:
            return False, f"X-Ray has not answered yet (last error: {error})"
        if age > window:
            return False, f"X-Ray has not answered for {age:.0f} s (limit {window:.0f} s)"
        return True, f"X-Ray answered {age:.1f} s ago"

    def _upstream_age(self) -> float | None:
        parts = (self.sender, self.telemetry, self.proxy)
        times = [p.last_success for p in parts if p is not None and p.last_success is not None]
        return time.monotonic() - max(times) if times else None

    def _gauges(self) -> dict[str, float]:
        gauges = {
            QUEUED_GAUGE: float(self.sink.queued),
            "buffered_bytes": float(sum(self.buffered().values())),
            "buffer_limit_bytes": float(self.buffer_limit),
        }
        age = self._upstream_age()
        if age is not None:
            gauges[UPSTREAM_AGE_GAUGE] = age
        return gauges


def local_control_plane(settings: Settings) -> ControlPlane:
    """The [sampling] control plane (in memory) seeded from ``sampling_dir``; without one, its
    Default rule keeps every trace: local development wants to see them all."""
    from tracekit.sampling.controlplane import ControlPlane
    from tracekit.sampling.rules import DEFAULT_RULE, RuleFileError

    plane = ControlPlane()
    if settings.sampling_dir.exists():
        try:
            plane.load_dir(settings.sampling_dir)
        except RuleFileError as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            raise ConfigError("--sampling-dir", str(settings.sampling_dir),
                              f"rule files without problems ({problems})") from None
    else:
        plane.load_rules([replace(DEFAULT_RULE, fixed_rate=1.0)])
        logger.info("no %s: local sampling keeps every trace (--sampling-dir DIR applies rules)",
                    settings.sampling_dir)
    return plane


class ListenError(OSError):
    """A port the sidecar needs cannot be bound: names that address alone and what moves it."""


def _listen(name: str, bind: Callable[[Address], L], settings: Settings) -> L:
    address: Address = getattr(settings, name)
    try:
        return bind(address)
    except OSError as exc:
        option = next(opt for opt in OPTIONS if opt.name == name)
        raise ListenError(
            f"cannot listen on {_fmt(address)} ({option.help}): {exc.strerror or exc}; "
            f"{option.flag} HOST:PORT or {option.env} moves it"
        ) from None


SUMMARY_GROUPS = ("rejected", "dropped", "unprocessed", "retries")


def summarize(counts: dict[str, int]) -> dict[str, Any]:
    """The shutdown summary: totals, and what was rejected, dropped... by where and why.

    Keys name the part and the reason (``upstream.shutdown``, ``udp.invalid_header``): several parts
    share reasons (the upstream sender, the tail buffer and the OTLP forwarder all have ``shutdown``),
    and one must not hide another. Zero counts are left out.
    """
    out: dict[str, Any] = {
        "received": counts.get("sidecar.udp.received", 0),
        "otlp_spans_received": counts.get("sidecar.otlp.spans.received", 0),
        "emf_lines_received": counts.get("sidecar.emf.received", 0),
        "emf_lines_sent": counts.get("sidecar.emf.upstream.sent", 0),
        "sent": counts.get("sidecar.upstream.sent", 0),
        "stored": counts.get("sidecar.local.stored", 0),
    }
    out.update({group: {} for group in SUMMARY_GROUPS})
    for key, value in sorted(counts.items()):
        parts = key.split(".")
        if parts[0] == "sidecar" and len(parts) >= 4 and parts[-2] in SUMMARY_GROUPS and value:
            out[parts[-2]][".".join(parts[1:-2] + parts[-1:])] = value
    return out


def _fmt(address: tuple[str, int]) -> str:
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    return f"{host}:{address[1]}"


def _stop_quietly(part: Service) -> None:
    try:
        part.stop()
    except Exception as exc:  # one part failing to stop must not keep the others running
        stats.report(f"sidecar.stop.{part.name}", exc)
