"""`tracekit sidecar` as a real process: SIGTERM with a full buffer, settings errors, --help."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sidecar_helpers import HEADER, XRayStub, document, get, send_udp, wait_until

from tracekit.sidecar.otlp_spans import PROTOBUF
from tracekit.sidecar.settings import OPTIONS


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(endpoint: str, *extra: str) -> tuple[subprocess.Popen[str], tuple[str, int], int]:
    udp, admin = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekit.cli", "sidecar", "--region", "us-east-1",
         "--endpoint-url", endpoint, "--udp-address", f"127.0.0.1:{udp}",
         "--tcp-address", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
         "--admin-address", f"127.0.0.1:{admin}", "--otlp-address", "off", "--emf-address", "off",
         *extra],
        stderr=subprocess.PIPE, text=True,
    )
    wait_until(lambda: get(f"http://127.0.0.1:{admin}/health")[0] in (200, 503) or proc.poll())
    return proc, ("127.0.0.1", udp), admin


def stop(proc: subprocess.Popen[str]) -> tuple[float, dict[str, object]]:
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - began
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert all({"time", "level", "message"} <= set(line) for line in lines)
    summary = next(line for line in lines if line["message"] == "sidecar stopped")
    return took, summary


def test_sigterm_flushes_a_full_buffer_then_exits_0(stub: XRayStub) -> None:
    stub.delay = 0.05  # a slow upstream keeps the buffer full when the signal comes
    proc, udp, admin = start(stub.url, "--workers", "1", "--shutdown-timeout", "10")
    send_udp(udp, *(HEADER + b"\n" + document(i) for i in range(3000)))
    wait_until(lambda: json.loads(get(f"http://127.0.0.1:{admin}/health")[1])["queued_documents"])
    took, summary = stop(proc)
    assert proc.returncode == 0 and took < 10
    assert summary["received"] == 3000 == summary["sent"] == len(stub.ids)
    assert summary["dropped"] == {} and stub.duplicates == 0


def test_sigterm_with_upstream_down_gives_up_at_the_deadline(stub: XRayStub) -> None:
    stub.stop()
    proc, udp, _ = start(stub.url, "--shutdown-timeout", "1.5")
    send_udp(udp, *(HEADER + b"\n" + document(i) for i in range(500)))
    time.sleep(0.3)  # let the datagrams be read; nothing can be sent
    took, summary = stop(proc)
    assert proc.returncode == 0 and took < 5
    dropped = summary["dropped"]
    assert isinstance(dropped, dict) and dropped == {"upstream.shutdown": summary["received"]}
    assert summary["received"] == 500


def test_bad_settings_exit_2_naming_the_setting(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "tracekit.cli", "sidecar"]
    bad = subprocess.run([*run, "--udp-address", "2000"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--udp-address='2000'" in bad.stderr and "host:port" in bad.stderr
    env = {**os.environ, "TRACEKIT_SIDECAR_MEMORY_LIMIT": "lots"}
    bad = subprocess.run(run, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "TRACEKIT_SIDECAR_MEMORY_LIMIT='lots'" in bad.stderr
    config = tmp_path / "sidecar.yaml"
    config.write_text("memory_limt: 64\n")
    bad = subprocess.run([*run, "--config", str(config)], capture_output=True, text=True)
    assert bad.returncode == 2 and "memory_limt" in bad.stderr and "memory_limit" in bad.stderr
    assert json.loads(bad.stderr)["level"] == "error"  # a JSON log line like all the others


def local_sidecar(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``tracekit sidecar --local`` on free ports that fails to start, as from a shell."""
    ports = [f"127.0.0.1:{free_port(kind)}" for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)]
    return subprocess.run(
        [sys.executable, "-m", "tracekit.cli", "sidecar", "--local", "--local-db",
         str(tmp_path / "t.db"), "--udp-address", ports[0], "--tcp-address", ports[1],
         "--admin-address", "127.0.0.1:0", "--otlp-address", "off", "--emf-address", "off", *extra],
        capture_output=True, text=True, timeout=60,
    )


def test_bad_sampling_rules_are_one_json_line_and_exit_2(tmp_path: Path) -> None:
    rules = tmp_path / "sampling"
    rules.mkdir()
    (rules / "rules.yaml").write_text("rules:\n  - name: x\n    priority: -3\n")
    result = local_sidecar(tmp_path, "--sampling-dir", str(rules))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = [json.loads(line) for line in result.stderr.splitlines()]
    assert line["level"] == "error" and line["message"].startswith("tracekit sidecar: --sampling-dir")
    assert f"{rules / 'rules.yaml'}:2: ReservoirSize: is required" in line["message"]


@pytest.mark.parametrize(("name", "kind"), [("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM),
                                            ("admin", socket.SOCK_STREAM)])
def test_a_taken_port_is_named_alone_with_what_moves_it(
    tmp_path: Path, name: str, kind: socket.SocketKind
) -> None:
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = local_sidecar(tmp_path, f"--{name}-address", address)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [error] = [json.loads(line) for line in result.stderr.splitlines() if '"error"' in line]
    message = error["message"]
    assert message.startswith(f"tracekit sidecar: cannot listen on {address} ")
    assert f"--{name}-address" in message and f"TRACEKIT_SIDECAR_{name.upper()}_ADDRESS" in message
    others = {"udp", "tcp", "admin"} - {name}
    assert not any(f"--{other}-address" in message for other in others), message
    assert message.count("127.0.0.1:") == 1


@pytest.mark.parametrize("command", [["sidecar"], ["traces", "list"], ["traces", "show"]])
def test_help_documents_every_setting(command: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tracekit.cli", *command, "--help"], capture_output=True, text=True
    ).stdout
    if command == ["sidecar"]:
        text = " ".join(out.split())  # argparse wraps the help text anywhere
        for opt in OPTIONS:
            assert f"[env {opt.env}; yaml {opt.name}; default " in text and opt.flag in text
        assert "/health" in out and "SIGTERM" in out and "--config" in out
    else:
        assert "usage: tracekit traces" in out


def test_load_benchmark_runs_and_loses_nothing_at_a_low_rate() -> None:
    bench = Path(__file__).resolve().parents[2] / "bench" / "bench_sidecar.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--rates", "2000", "--seconds", "0.5", "--capacity-seconds", "0.3"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[-1].split()
    assert row[:5] == ["2000", "tracekit", "1000", row[3], "1000"] and row[5] == "0", result.stdout
    assert "sender: " in result.stdout


def test_load_benchmark_refuses_a_daemon_path_that_is_not_a_program(tmp_path: Path) -> None:
    bench = Path(__file__).resolve().parents[2] / "bench" / "bench_sidecar.py"
    missing = tmp_path / "xray"
    result = subprocess.run(
        [sys.executable, str(bench), "--daemon", str(missing)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and f"--daemon {missing}: not an executable file" in result.stderr


def test_summary_keeps_drops_of_different_parts_apart() -> None:
    from tracekit.sidecar.runtime import summarize

    summary = summarize({
        "sidecar.udp.received": 9, "sidecar.otlp.spans.received": 4, "sidecar.upstream.sent": 8,
        "sidecar.upstream.dropped.shutdown": 3, "sidecar.tail.dropped.shutdown": 2,
        "sidecar.udp.rejected.invalid_header": 1, "sidecar.otlp.spans.rejected.invalid_span": 0,
        "xray_api.dropped.shutdown": 5,
    })  # fmt: skip
    assert summary["dropped"] == {"upstream.shutdown": 3, "tail.shutdown": 2}
    assert summary["rejected"] == {"udp.invalid_header": 1}
    assert (summary["received"], summary["otlp_spans_received"], summary["sent"]) == (9, 4, 8)


def test_shutdown_timeout_bounds_the_whole_stop_with_every_receiver_stuck(stub: XRayStub) -> None:
    """X-Ray, CloudWatch Logs and the OTLP collector all down: the stop still ends on time."""
    stub.stop()
    emf, otlp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    proc, udp, admin = start(
        stub.url, "--shutdown-timeout", "2", "--emf-address", f"127.0.0.1:{emf}",
        "--logs-endpoint-url", stub.url, "--otlp-address", f"127.0.0.1:{otlp}",
        "--otlp-forward", stub.url + "/v1/traces",
    )  # fmt: skip
    send_udp(udp, HEADER + b"\n" + document(1))
    line = {"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [
        {"Namespace": "N", "Dimensions": [[]], "Metrics": [{"Name": "M"}]}]}, "M": 1}
    with socket.create_connection(("127.0.0.1", emf)) as conn:
        conn.sendall(json.dumps(line).encode() + b"\n")
    request = urllib.request.Request(
        f"http://127.0.0.1:{otlp}/v1/traces", data=b"", headers={"Content-Type": PROTOBUF}
    )
    assert urllib.request.urlopen(request, timeout=5).status == 200
    metrics = f"http://127.0.0.1:{admin}/metrics"
    wait_until(lambda: b"tracekit_sidecar_emf_accepted_total 1.0" in get(metrics)[1])
    took, summary = stop(proc)
    assert proc.returncode == 0 and took < 2 + 1.0, took
    assert summary["received"] == 1 and summary["emf_lines_received"] == 1


def test_a_taken_port_exits_1_with_a_json_line_naming_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin = f"127.0.0.1:{taken.getsockname()[1]}"
        run = subprocess.run(
            [sys.executable, "-m", "tracekit.cli", "sidecar", "--region", "us-east-1",
             "--udp-address", "127.0.0.1:0", "--tcp-address", "127.0.0.1:0", "--admin-address", admin],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert run.returncode == 1
    line = json.loads(run.stderr.strip().splitlines()[-1])
    assert line["level"] == "error" and f"cannot listen on {admin} " in line["message"]
    assert "--admin-address HOST:PORT" in line["message"]
