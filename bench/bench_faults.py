"""Reliability figures for ``tracekit sidecar`` and the library under faults and hostile clients.

Every part runs on loopback against local upstreams (the X-Ray stub, moto behind a flaky proxy):

- ``emf``:    CloudWatch Logs answers 503 for --outage seconds while EMF lines arrive: delivered,
              counted (by reason), and the two outage log lines;
- ``memory``: a slow X-Ray upstream, documents of 1 KB, 8 KB and 60 KB sent as fast as UDP allows:
              peak RSS growth over idle against --memory-limit;
- ``flood``:  130 EMF TCP connections each sending 1 MB without a newline: RSS growth, closed;
- ``health``: slow clients (one header line a second) on every port: slowest /health answer;
- ``exit``:   a Flask app's exit time with an unresolvable daemon (1 s resolver), a hanging
              OTLP/HTTP endpoint and a refused gRPC one (TRACEKIT_FLUSH_TIMEOUT=2).

    .venv/bin/python bench/bench_faults.py [--parts emf,memory,flood,health,exit]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from flaky_upstream import FlakyUpstream  # noqa: E402
from xray_stub import XRayStub, document  # noqa: E402

HEADER = b'{"format":"json","version":1}\n'
os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")  # moto and the stub
ENV = dict(os.environ)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Sidecar:
    """``tracekit sidecar`` as a process on free ports; ``stop()`` returns its log lines."""

    def __init__(self, endpoint: str, *extra: str) -> None:
        self.ports = {name: free_port() for name in ("tcp", "admin", "otlp", "emf")}
        self.udp = free_port(socket.SOCK_DGRAM)
        cmd = [sys.executable, "-m", "tracekit.cli", "sidecar", "--region", "us-east-1",
               "--endpoint-url", endpoint, "--udp-address", f"127.0.0.1:{self.udp}",
               *(f"--{name}-address=127.0.0.1:{port}" for name, port in self.ports.items()),
               *extra]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                get(self.url("admin", "/health"))
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("sidecar did not start")

    def url(self, port: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def stop(self) -> list[dict[str, Any]]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def summary_of(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return next(line for line in lines if line["message"] == "sidecar stopped")


def emf_outage(args: argparse.Namespace) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    flaky = FlakyUpstream(f"http://{host}:{port}").start()
    stub = XRayStub().start()
    sidecar = Sidecar(stub.url, "--logs-endpoint-url", flaky.url, "--emf-log-group", "/bench/emf",
                      "--emf-log-stream", "s", "--retry-for", "60")  # fmt: skip
    flaky.outage(args.outage)
    now = int(time.time() * 1000)
    lines = [_emf_line(i, now) for i in range(args.lines)] + [_emf_line(0, 0)] * 20
    with socket.create_connection(("127.0.0.1", sidecar.ports["emf"])) as conn:
        conn.sendall(b"\n".join(lines) + b"\n")
    deadline = time.monotonic() + args.outage + 30
    while time.monotonic() < deadline and b"emf_upstream_sent_total " + str(args.lines).encode() \
            not in get(sidecar.url("admin", "/metrics"))[1]:  # fmt: skip
        time.sleep(0.2)
    logs = sidecar.stop()
    summary = summary_of(logs)
    import boto3

    client = boto3.client("logs", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
    stored = len(client.get_log_events(logGroupName="/bench/emf", logStreamName="s")["events"])
    outage = [line["message"] for line in logs if "emf.upstream: upstream" in line["message"]]
    print(f"emf: {args.lines} valid + 20 Timestamp-0 lines, CloudWatch Logs 503 for {args.outage:g} s: "
          f"received {summary['emf_lines_received']}, delivered {stored} "
          f"(sent {summary['emf_lines_sent']}), rejected {summary['rejected']}, "
          f"dropped {summary['dropped'] or 0}, outage log lines {len(outage)}")
    flaky.stop()
    stub.stop()
    moto.stop()


def _emf_line(i: int, ts: int) -> bytes:
    metrics = [{"Namespace": "Bench", "Dimensions": [["Route"]], "Metrics": [{"Name": "Latency"}]}]
    doc = {"_aws": {"Timestamp": ts, "CloudWatchMetrics": metrics}, "Route": "/r", "Latency": i}
    return json.dumps(doc).encode()


def memory(args: argparse.Namespace) -> None:
    for size, limit in ((1024, 4), (8 * 1024, 32), (60 * 1024, 32)):
        stub = XRayStub().start()
        stub.delay = 0.2  # 4 workers x 50 documents / 0.2 s: far below what is sent
        sidecar = Sidecar(stub.url, "--memory-limit", str(limit), "--otlp-address", "off",
                          "--emf-address", "off")  # fmt: skip
        time.sleep(0.5)
        idle = rss_mb(sidecar.proc.pid)
        peak = idle
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        payloads = [HEADER + document(i, size - len(HEADER)) for i in range(64)]
        total = 3 * limit * 1024 * 1024 // size  # three times the limit
        started = time.monotonic()
        for i in range(total):
            with contextlib.suppress(OSError):
                sock.sendto(payloads[i % 64], ("127.0.0.1", sidecar.udp))
            if i % 200 == 0:
                peak = max(peak, rss_mb(sidecar.proc.pid))
                time.sleep(0.001)
        while time.monotonic() - started < args.memory_seconds:
            peak = max(peak, rss_mb(sidecar.proc.pid))
            time.sleep(0.05)
        summary = summary_of(sidecar.stop())
        sock.close()
        stub.stop()
        print(f"memory: {size // 1024:>2} KB documents, --memory-limit {limit:>2} MB: "
              f"RSS idle {idle:.1f} MB, peak {peak:.1f} MB, growth {peak - idle:.1f} MB "
              f"(limit {peak - idle - limit:+.1f}); "
              f"received {summary['received']}, dropped {summary['dropped']}")


def flood(args: argparse.Namespace) -> None:
    stub = XRayStub().start()
    sidecar = Sidecar(stub.url, "--logs-endpoint-url", stub.url)
    idle = peak = rss_mb(sidecar.proc.pid)
    closed: list[bool] = []

    def one() -> None:
        try:
            with socket.create_connection(("127.0.0.1", sidecar.ports["emf"]), timeout=30) as conn:
                conn.sendall(b"{" + b"x" * 1_048_576)
                closed.append(conn.recv(10) == b"")
        except OSError:
            closed.append(True)

    threads = [threading.Thread(target=one) for _ in range(130)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_mb(sidecar.proc.pid))
        time.sleep(0.02)
    took = time.monotonic() - began
    summary = summary_of(sidecar.stop())
    stub.stop()
    fates = (*summary["rejected"].items(), *summary["dropped"].items())
    emf = {k: v for k, v in fates if k.startswith("emf")}
    print(f"flood: 130 EMF connections x 1 MB without newline: RSS {idle:.1f} -> peak {peak:.1f} MB "
          f"(+{peak - idle:.1f}), {closed.count(True)}/130 closed in {took:.1f} s; "
          f"lines received {summary['emf_lines_received']} = counted {sum(emf.values())} {emf}")


def health(args: argparse.Namespace) -> None:
    stub = XRayStub().start()
    sidecar = Sidecar(stub.url, "--logs-endpoint-url", stub.url)
    stop = threading.Event()
    targets = [("127.0.0.1", p) for p in sidecar.ports.values()] * 40

    def slowloris() -> None:
        socks: list[socket.socket | None] = [None] * len(targets)
        while not stop.wait(1.0):
            for i, target in enumerate(targets):
                try:
                    if socks[i] is None:
                        socks[i] = socket.create_connection(target, timeout=1)
                        socks[i].sendall(b"POST / HTTP/1.1\r\n")  # type: ignore[union-attr]
                    socks[i].sendall(b"X-Slow: 1\r\n")  # type: ignore[union-attr]
                except OSError:
                    socks[i] = None
        for sock in socks:
            if sock is not None:
                sock.close()

    attacker = threading.Thread(target=slowloris, daemon=True)
    attacker.start()
    time.sleep(2.0)
    slowest, statuses = 0.0, []
    end = time.monotonic() + args.health_seconds
    while time.monotonic() < end:
        began = time.monotonic()
        try:
            statuses.append(get(sidecar.url("admin", "/health"))[0])
        except OSError:
            statuses.append(0)
        slowest = max(slowest, time.monotonic() - began)
        time.sleep(0.2)
    stop.set()
    attacker.join()
    sidecar.stop()
    stub.stop()
    ok = statuses.count(200)
    print(f"health: 40 slow clients on each of 4 ports (160): /health {ok}/{len(statuses)} answered 200, "
          f"slowest {slowest * 1000:.0f} ms")


def exit_time(args: argparse.Namespace) -> None:
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)
    cases = {
        "unresolvable daemon, 1 s resolver": {"AWS_XRAY_DAEMON_ADDRESS": "nonexistent.invalid:2000",
                                              "STALL_RESOLVER": "1"},
        "hanging OTLP/HTTP endpoint": {"TRACEKIT_EXPORTERS": "xray,otlp",
                                       "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hanging.getsockname()[1]}"},
        "refused gRPC endpoint": {"TRACEKIT_EXPORTERS": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                  "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"},
    }  # fmt: skip
    for name, env in cases.items():
        print(f"exit: {name}: {app_exit_seconds(env, 2.0):.2f} s after the last request "
              "(TRACEKIT_FLUSH_TIMEOUT=2)")
    hanging.close()


def app_exit_seconds(env: dict[str, str], flush_timeout: float) -> float:
    """Seconds from the last request of ``exit_app.py`` (Flask, 30 requests) to its process end."""
    full = {**ENV, "TRACEKIT_FLUSH_TIMEOUT": str(flush_timeout), **env}
    proc = subprocess.Popen([sys.executable, str(HERE / "exit_app.py")], env=full, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LAST_REQUEST"):
        raise SystemExit(f"exit_app.py failed: {line!r}")
    proc.wait(timeout=120)
    return time.monotonic() - float(line.split()[1])


PARTS = {"emf": emf_outage, "memory": memory, "flood": flood, "health": health, "exit": exit_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma list of " + ", ".join(PARTS))
    parser.add_argument("--outage", type=float, default=20.0, help="emf: seconds of 503 answers")
    parser.add_argument("--lines", type=int, default=2000, help="emf: valid lines sent")
    parser.add_argument("--memory-seconds", type=float, default=6.0, help="memory: seconds per size")
    parser.add_argument("--health-seconds", type=float, default=8.0, help="health: seconds probed")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    for part in args.parts.split(","):
        PARTS[part](args)


if __name__ == "__main__":
    main()
