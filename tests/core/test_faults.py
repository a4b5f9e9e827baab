"""Telemetry never breaks the application: fault injection on every output."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import tracekit
from tracekit._shared import stats as _stats
from tracekit.tracing import provider


@tracekit.trace(name="request")
def request(i: int) -> int:
    tracekit.annotate("i", i)
    tracekit.add_metadata("payload", {"set": {1, 2}, "obj": object(), "nan": float("nan")})
    with tracekit.span("child"):
        pass
    return i


def closed_udp_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def test_daemon_port_closed(caplog: Any) -> None:
    _stats.reset()
    tracekit.configure(exporters=["xray"], daemon_udp=("127.0.0.1", closed_udp_port()),
                       sampler=ALWAYS_ON)
    try:
        assert [request(i) for i in range(50)] == list(range(50))
        assert tracekit.force_flush()
    finally:
        provider.shutdown()
    assert _stats.stats()["xray.documents_sent"] + _stats.stats().get(
        "xray.documents_dropped.send_error", 0) == 50


def test_daemon_host_unresolvable_is_counted_and_logged_once(caplog: Any) -> None:
    _stats.reset()
    tracekit.configure(exporters=["xray"], daemon_udp=("no-such-host.invalid", 2000),
                       sampler=ALWAYS_ON)
    try:
        assert [request(i) for i in range(20)] == list(range(20))
        tracekit.force_flush()
    finally:
        provider.shutdown()
    assert _stats.stats()["xray.documents_dropped.unresolved"] == 20  # resolved once, not per send
    assert len([r for r in caplog.records if "does not resolve" in r.getMessage()]) == 1


def test_collector_down_and_back(otlp_receiver: Any) -> None:
    _stats.reset()
    otlp_receiver.fail(status=503)
    tracekit.configure(exporters=["otlp"], otlp_endpoint=otlp_receiver.traces_url,
                       sampler=ALWAYS_ON)
    try:
        started = time.monotonic()
        assert [request(i) for i in range(20)] == list(range(20))
        assert time.monotonic() - started < 1.0, "the request thread must not wait for the collector"
        tracekit.force_flush(timeout=2)
        otlp_receiver.heal()
        request(99)
        assert tracekit.force_flush(timeout=10)
    finally:
        provider.shutdown()
    assert otlp_receiver.wait_for(2)
    assert _stats.stats()["otlp.spans_exported"] >= 2


def test_collector_refusing_connections() -> None:
    _stats.reset()
    tracekit.configure(exporters=["otlp"], otlp_endpoint="http://127.0.0.1:9/v1/traces",
                       sampler=ALWAYS_ON)
    try:
        assert request(1) == 1
        tracekit.force_flush(timeout=3)
    finally:
        provider.shutdown()
    assert _stats.stats().get("otlp.spans_failed", 0) >= 2


def test_moto_stopped_mid_run_then_shutdown_is_bounded() -> None:
    _stats.reset()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    tracekit.configure(exporters=["xray"], xray_direct=True, region="us-east-1",
                       endpoint_url=f"http://{host}:{port}", sampler=ALWAYS_ON)
    try:
        assert [request(i) for i in range(10)] == list(range(10))
        assert tracekit.force_flush(timeout=10)
        server.stop()
        assert [request(i) for i in range(10)] == list(range(10))
        started = time.monotonic()
        tracekit.force_flush(timeout=1)
        assert time.monotonic() - started < 3
    finally:
        started = time.monotonic()
        provider.shutdown()
        assert time.monotonic() - started < 10
    counts = _stats.stats()
    assert counts["xray_api.sent"] == 10
    assert any(k.startswith("xray_api.") and ("retr" in k or "drop" in k or "error" in k)
               for k in counts), counts


def test_exporter_that_raises_is_contained() -> None:
    from opentelemetry.sdk.trace import SpanProcessor

    class Exploding(SpanProcessor):
        def on_end(self, span: Any) -> None:
            raise RuntimeError("exporter bug")

    tracekit.configure(exporters=[], span_processors=[Exploding()], sampler=ALWAYS_ON)
    try:
        assert request(3) == 3
    finally:
        provider.shutdown()


def test_broken_sampler_drops_instead_of_failing() -> None:
    from opentelemetry.sdk.trace.sampling import Sampler

    class Broken(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("sampler bug")

        def get_description(self) -> str:
            return "broken"

    _stats.reset()
    tracekit.configure(exporters=[], sampler=Broken())
    try:
        assert request(4) == 4
    finally:
        provider.shutdown()
    assert _stats.stats()["errors.sampler"] >= 1


def test_bad_environment_at_first_use_does_not_break_the_app(monkeypatch: Any) -> None:
    provider.shutdown()
    monkeypatch.setenv("TRACEKIT_EXPORTERS", "xray,kafka")
    _stats.reset()
    try:
        assert request(5) == 5
    finally:
        provider.shutdown()
    assert _stats.stats()["errors.configure"] == 1
    with pytest.raises(tracekit.ConfigError, match=r"TRACEKIT_EXPORTERS='xray,kafka'.*xray, otlp"):
        tracekit.configure()


def test_queue_is_bounded_and_drops_are_counted(xray_daemon: Any) -> None:
    _stats.reset()
    tracekit.configure(exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=ALWAYS_ON, max_queue=10)
    try:
        from tracekit.xray.processor import XRaySpanProcessor

        built = provider._state["provider"]
        processors = built.processors  # the lean provider (X-Ray only) lists its processors
        emitter = next(p for p in processors if isinstance(p, XRaySpanProcessor))
        with emitter._lock:  # hold the worker so that the queue fills up
            for i in range(30):
                request(i)
        tracekit.force_flush()
    finally:
        provider.shutdown()
    assert _stats.stats()["spans.dropped.queue_full"] == 60 - 10


def test_configure_is_idempotent_and_thread_safe(xray_daemon: Any) -> None:
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        results.append(tracekit.configure(service="same", exporters=["xray"],
                                          daemon_udp=("127.0.0.1", xray_daemon.port)))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    provider.shutdown()
    assert len({id(r) for r in results}) == 1


def test_disabled_sdk_means_no_spans(monkeypatch: Any) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracekit.configure() is None
    assert request(6) == 6
    provider.shutdown()


def test_import_and_configure_touch_no_network() -> None:
    code = (
        "import socket\n"
        "def deny(*a, **k):\n"
        "    raise AssertionError('network touched at import/configure')\n"
        "socket.socket.connect = deny\n"
        "socket.socket.sendto = deny\n"
        "socket.getaddrinfo = deny\n"
        "import tracekit\n"
        "tracekit.configure(service='x', exporters=['xray', 'otlp'])\n"
        "import sys; assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_none_mixed_with_exporters_is_rejected() -> None:
    with pytest.raises(tracekit.ConfigError, match="'none' alone"):
        tracekit.configure(exporters="xray,none")


def test_first_use_racing_a_reconfigure_keeps_the_explicit_setup(monkeypatch: Any) -> None:
    """A traced call in another thread while ``configure`` swaps providers must not reset it."""
    from opentelemetry.sdk.trace import SpanProcessor

    entered, release, waiting = threading.Event(), threading.Event(), threading.Event()

    class SlowToShutDown(SpanProcessor):
        def shutdown(self) -> None:
            entered.set()
            release.wait(10)

    class SpyLock:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __enter__(self) -> None:
            if threading.current_thread().name == "first-use":
                waiting.set()
            self.inner.acquire()

        def __exit__(self, *exc: object) -> None:
            self.inner.release()

    tracekit.configure(service="first", exporters=[], span_processors=[SlowToShutDown()],
                       sampler=ALWAYS_ON)
    monkeypatch.setattr(provider, "_lock", SpyLock(provider._lock))
    explicit = threading.Thread(target=lambda: tracekit.configure(
        service="second", exporters=[], sampler=ALWAYS_ON))
    explicit.start()
    assert entered.wait(10)
    first_use = threading.Thread(target=provider.get_tracer, name="first-use")
    first_use.start()
    assert waiting.wait(10)
    release.set()
    explicit.join(10)
    first_use.join(10)
    try:
        assert provider.current_config().service == "second"
    finally:
        provider.shutdown()


def test_xray_only_configure_skips_the_otlp_export_machinery() -> None:
    """Lambda cold starts pay for every import: an X-Ray-only setup needs no OTLP/batch export."""
    code = (
        "import sys, tracekit\n"
        "from opentelemetry.sdk.trace.sampling import ALWAYS_ON\n"
        "tracekit.configure(service='x', exporters=['xray'], sampler=ALWAYS_ON)\n"
        "from opentelemetry import propagate\n"
        "assert 'X-Amzn-Trace-Id' in propagate.get_global_textmap().fields\n"
        "assert 'traceparent' in propagate.get_global_textmap().fields\n"
        "print(sorted(m for m in sys.modules if m.startswith(\n"
        "    ('opentelemetry.sdk.trace.export', 'opentelemetry.exporter', 'tracekit.tracing.otlp'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
