"""The OTLP and EMF receivers as the sidecar builds them from its settings, and through the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from ingest_helpers import ListSink, wait_until
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_ingest_emf import emf_line

from tracekit._shared import stats as _stats
from tracekit.sidecar import ingest
from tracekit.sidecar.emf_receiver import EmfReceiver
from tracekit.sidecar.otlp_receiver import OtlpHttpReceiver
from tracekit.sidecar.settings import Settings, resolve

ROOT = Path(__file__).resolve().parents[2]
ANY_PORT = ("127.0.0.1", 0)


def free_port() -> int:
    """A port free for both TCP and UDP (the EMF endpoint needs both)."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def built(settings: Settings, sink: ListSink) -> dict[str, object]:
    found = ingest.listeners(settings, sink, "us-east-1")
    return {listener.name: listener for listener in found}


def stop_all(listeners: dict[str, object]) -> None:
    for listener in listeners.values():
        listener.stop()  # type: ignore[attr-defined]


def test_defaults_translate_otlp_and_ship_emf_to_the_configured_group(sink: ListSink) -> None:
    settings = replace(Settings(), otlp_address=ANY_PORT, emf_address=ANY_PORT, emf_log_group="/g")
    found = built(settings, sink)
    try:
        otlp, emf = found["otlp"], found["emf"]
        assert isinstance(otlp, OtlpHttpReceiver) and otlp.sink is sink and otlp.forwarder is None
        assert isinstance(emf, EmfReceiver)
        assert (emf.shipper.log_group, emf.shipper.log_stream) == ("/g", socket.gethostname())  # type: ignore[attr-defined]
        assert emf.shipper.emf is True  # type: ignore[attr-defined]
    finally:
        stop_all(found)


def test_forwarding_replaces_translation_unless_asked_for_both(sink: ListSink) -> None:
    base = replace(Settings(), otlp_address=ANY_PORT, emf_address=None, otlp_forward="http://127.0.0.1:9/v1/traces")
    for translate, expected_sink in ((None, None), (True, sink)):
        found = built(replace(base, otlp_translate=translate), sink)
        try:
            otlp = found["otlp"]
            assert isinstance(otlp, OtlpHttpReceiver)
            assert otlp.forwarder is not None and otlp.sink is expected_sink
            assert list(found) == ["otlp"]
        finally:
            stop_all(found)


def test_off_disables_a_receiver() -> None:
    settings = resolve(
        _args(otlp_address="off", emf_address="off"), env={}
    )
    assert settings.otlp_address is None and settings.emf_address is None
    assert ingest.listeners(settings, ListSink(), None) == []


def test_a_taken_port_skips_that_receiver_with_a_warning(
    sink: ListSink, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = replace(Settings(), otlp_address=taken.getsockname(), emf_address=None)
        assert ingest.listeners(settings, sink, None) == []
    assert _stats.stats()["errors.sidecar.otlp.bind"] == 1
    assert "otlp receiver not started, cannot listen on 127.0.0.1:" in caplog.text


def test_local_mode_prints_valid_emf_lines(sink: ListSink, capsys: pytest.CaptureFixture[str]) -> None:
    settings = replace(Settings(), local=True, otlp_address=None, emf_address=ANY_PORT)
    found = built(settings, sink)
    emf = found["emf"]
    assert isinstance(emf, EmfReceiver)
    emf.start()
    with socket.create_connection(emf.address()) as conn:
        conn.sendall(emf_line("Local") + b"\nnot emf\n")
    wait_until(lambda: _stats.stats().get("sidecar.emf.received") == 2, what="two lines")
    emf.stop()
    printed = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["Local"] for line in printed] == [12.5]


def _args(**values: str) -> object:
    import argparse

    from tracekit.sidecar.settings import OPTIONS

    namespace = argparse.Namespace(**{opt.name: None for opt in OPTIONS}, config=None)
    for key, value in values.items():
        setattr(namespace, key, value)
    return namespace


@pytest.mark.slow
def test_cli_local_mode_end_to_end(tmp_path: Path) -> None:
    """``tracekit sidecar --local``: an OTLP span is stored and shown by ``tracekit traces``."""
    otlp, emf, udp, admin = free_port(), free_port(), free_port(), free_port()
    db = tmp_path / "traces.db"
    env = {**os.environ, "TRACEKIT_SIDECAR_EMF_ADDRESS": f"127.0.0.1:{emf}",
           "TRACEKIT_SIDECAR_LOCAL_DB": str(db)}
    cli = [sys.executable, "-m", "tracekit.cli"]
    proc = subprocess.Popen(
        [*cli, "sidecar", "--local", "--otlp-address", f"127.0.0.1:{otlp}",
         "--udp-address", f"127.0.0.1:{udp}", "--tcp-address", f"127.0.0.1:{udp}",
         "--admin-address", f"127.0.0.1:{admin}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: _connects(otlp) and _connects(emf), what="the sidecar's receivers")
        provider = TracerProvider(resource=Resource.create({"service.name": "cli-e2e"}))
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://127.0.0.1:{otlp}/v1/traces", timeout=5)
        ))  # fmt: skip
        with provider.get_tracer("t").start_as_current_span("checkout") as span:
            trace_id = f"{span.get_span_context().trace_id:032x}"
        provider.shutdown()
        with socket.create_connection(("127.0.0.1", emf)) as conn:
            conn.sendall(emf_line("ViaCli") + b"\n")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "ViaCli" in out  # local mode prints EMF lines
    xray_id = f"1-{trace_id[:8]}-{trace_id[8:]}"
    shown = subprocess.run(
        [*cli, "traces", "show", xray_id], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "cli-e2e" in shown.stdout


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
