"""Local mode: documents into SQLite, `tracekit traces list/show`, and the README's script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sidecar_helpers import send_udp, wait_until

from tracekit._shared import stats as _stats
from tracekit.cli import main as tracekit_main
from tracekit.sidecar.runtime import Sidecar
from tracekit.xray.protocol import HEADER

ROOT = Path(__file__).resolve().parents[2]
TRACE = "1-6b0705a8-0123456789abcdef01234567"


def datagram(**doc: object) -> bytes:
    return HEADER + b"\n" + json.dumps(doc).encode()


def traces(db: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = tracekit_main(["traces", "--db", str(db), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_xray_sdk_traces_are_stored_and_shown(
    make_sidecar: Callable[..., Sidecar], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aws_xray_sdk.core.recorder import AWSXRayRecorder

    db = tmp_path / "traces.db"
    sidecar = make_sidecar(local=True, local_db=db)
    host, port = sidecar.udp.address()
    recorder = AWSXRayRecorder()
    recorder.configure(
        daemon_address=f"{host}:{port}", sampling=False, context_missing="LOG_ERROR", plugins=(),
        streaming_threshold=1,  # stream subsegments as their own documents, as big traces do
    )
    ids = {}
    for name, fail in (("cart", False), ("billing", True)):
        segment = recorder.begin_segment(name)
        segment.put_annotation("customer", "c-42")
        recorder.begin_subsegment("load cart")
        recorder.end_subsegment()
        sub = recorder.begin_subsegment("charge card")
        if fail:
            sub.add_exception(ValueError("insufficient funds"), [], remote=False)
        recorder.end_subsegment()
        recorder.end_segment()
        ids[name] = segment.trace_id
    wait_until(lambda: _stats.stats().get("sidecar.udp.received", 0) == 6)
    assert sidecar.sink.flush(5)

    code, out, _ = traces(db, "list", capsys=capsys)
    assert code == 0 and ids["cart"] in out and ids["billing"] in out
    code, out, _ = traces(db, "list", "--errors", capsys=capsys)
    assert ids["billing"] in out and ids["cart"] not in out and "ERROR" in out
    code, out, _ = traces(db, "list", "--service", "cart", capsys=capsys)
    assert ids["cart"] in out and ids["billing"] not in out

    code, out, _ = traces(db, "show", ids["billing"], capsys=capsys)
    lines = out.splitlines()
    assert code == 0 and lines[1].startswith("billing [segment]") and "customer=c-42" in lines[1]
    assert lines[2].startswith("  load cart [subsegment]")
    assert lines[3].startswith("  charge card [subsegment]")
    assert " ms " in lines[3] and "ValueError: insufficient funds" in lines[3]
    assert "(3 documents)" in lines[0]  # the subsegments were streamed as their own documents


def test_a_completed_document_replaces_its_in_progress_version(
    make_sidecar: Callable[..., Sidecar], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.db"
    sidecar = make_sidecar(local=True, local_db=db)
    common = {"name": "api", "id": "a1b2c3d4e5f60718", "trace_id": TRACE, "start_time": 100.0}
    send_udp(sidecar.udp.address(), datagram(**common, in_progress=True))
    wait_until(lambda: _stats.stats().get("sidecar.udp.received") == 1)
    assert sidecar.sink.flush(5)
    assert "in progress" in traces(db, "list", capsys=capsys)[1]
    send_udp(sidecar.udp.address(), datagram(**common, end_time=100.25))
    send_udp(sidecar.udp.address(), datagram(**common, in_progress=True))  # late: ignored
    wait_until(lambda: _stats.stats().get("sidecar.udp.received") == 3)
    assert sidecar.sink.flush(5)
    out = traces(db, "list", capsys=capsys)[1]
    assert "250.0 ms" in out and "in progress" not in out


def test_retention_keeps_the_newest_traces_and_bad_documents_are_counted(
    make_sidecar: Callable[..., Sidecar], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.db"
    sidecar = make_sidecar(local=True, local_db=db, local_retention=3)
    for i in range(6):
        tid = f"1-6b0705a8-{i:024x}"
        send_udp(sidecar.udp.address(), datagram(name="s", id=f"{i:016x}", trace_id=tid,
                                                 start_time=1.0 + i, end_time=2.0 + i))
        wait_until(lambda i=i: _stats.stats().get("sidecar.udp.received") == i + 1)
        assert sidecar.sink.flush(5)
    send_udp(sidecar.udp.address(), HEADER + b"\nnot json", datagram(name="no ids"))
    wait_until(lambda: _stats.stats().get("sidecar.local.dropped.invalid_document") == 2)
    out = traces(db, "list", capsys=capsys)[1]
    assert [line.split()[0][-1] for line in out.splitlines()[1:]] == ["5", "4", "3"]


def test_traces_cli_explains_missing_store_and_unknown_trace(
    make_sidecar: Callable[..., Sidecar], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = traces(tmp_path / "none.db", "list", capsys=capsys)
    assert code == 1 and "tracekit sidecar --local" in err
    make_sidecar(local=True, local_db=tmp_path / "t.db")
    code, _, err = traces(tmp_path / "t.db", "show", TRACE, capsys=capsys)
    assert code == 1 and TRACE in err and "traces list" in err


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_local_mode_script_end_to_end(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_STREAM)
    env = {
        **os.environ,
        "TRACEKIT_SIDECAR_LOCAL_DB": str(tmp_path / "traces.db"),
        "TRACEKIT_SIDECAR_UDP_ADDRESS": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
        "TRACEKIT_SIDECAR_TCP_ADDRESS": f"127.0.0.1:{port}",
        "TRACEKIT_SIDECAR_ADMIN_ADDRESS": f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
        "TRACEKIT_SIDECAR_OTLP_ADDRESS": "off",
        "TRACEKIT_SIDECAR_EMF_ADDRESS": "off",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "examples/sidecar_local/run.sh")],
        env=env, capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "shop POST /orders/3" in out and "ERROR" in out
    tree = out.split("== tracekit traces show")[1]
    assert "payments.charge [subsegment]" in tree and "card declined" in tree and "order_id=3" in tree
    assert f"tracekit traces serve --db {tmp_path / 'traces.db'} --address" in out.splitlines()[-2]


def test_readme_script_on_a_taken_port_says_which_and_how_to_move_it(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {
            **os.environ,
            "TRACEKIT_SIDECAR_LOCAL_DB": str(tmp_path / "traces.db"),
            "TRACEKIT_SIDECAR_UDP_ADDRESS": address,
            "TRACEKIT_SIDECAR_TCP_ADDRESS": f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
            "TRACEKIT_SIDECAR_ADMIN_ADDRESS": f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
            "TRACEKIT_SIDECAR_OTLP_ADDRESS": "off",
            "TRACEKIT_SIDECAR_EMF_ADDRESS": "off",
        }
        began = time.monotonic()
        result = subprocess.run(
            ["bash", str(ROOT / "examples/sidecar_local/run.sh")],
            env=env, capture_output=True, text=True, timeout=90,
        )
    assert result.returncode != 0 and time.monotonic() - began < 8
    assert result.stdout == ""
    assert f"cannot listen on {address}" in result.stderr
    assert "TRACEKIT_SIDECAR_UDP_ADDRESS=127.0.0.1:PORT bash examples/demo.sh" in result.stderr
    assert "Traceback" not in result.stderr and ".log" not in result.stderr
    assert len(result.stderr.splitlines()) <= 3, result.stderr
