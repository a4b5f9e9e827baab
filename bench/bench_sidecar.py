"""Load benchmark for ``tracekit sidecar``: ~1 KB documents over UDP at fixed rates.

For each rate a fresh sidecar process forwards to the fast X-Ray stub (``bench/xray_stub.py``, its
own process; its capacity is measured first and printed). The sender, the stub and the sidecar
share the machine's cores, as in the X-Ray daemon measurement this is compared with
(aws-facts.md section 4: 0.28% lost at 20k/s, 7.6% at 40k/s, 29-37 MB peak RSS).

    .venv/bin/python bench/bench_sidecar.py [--rates 5000,10000,20000,40000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from xray_stub import document, measure_capacity  # noqa: E402

HEADER = b'{"format":"json","version":1}\n'
TICKS = os.sysconf("SC_CLK_TCK")


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def start_stub() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "xray_stub.py"), "--serve"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, f"http://127.0.0.1:{proc.stdout.readline().strip()}"


def start_sidecar(stub_url: str, args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    udp, admin = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    cmd = [
        sys.executable, "-m", "tracekit.cli", "sidecar", "--region", "us-east-1",
        "--endpoint-url", stub_url, "--udp-address", f"127.0.0.1:{udp}",
        "--tcp-address", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
        "--admin-address", f"127.0.0.1:{admin}", "--workers", str(args.workers),
        "--memory-limit", str(args.memory_limit), "--receive-buffer", str(args.receive_buffer),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            get_json(f"http://127.0.0.1:{admin}/health")
            return proc, udp
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("sidecar did not become healthy")


def send(port: int, rate: int, seconds: float, first: int) -> tuple[int, float]:
    """Send ``rate`` documents per second, paced every millisecond; returns (sent, elapsed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    target = ("127.0.0.1", port)
    total = int(rate * seconds)
    template = [HEADER + document(first + i) for i in range(min(total, 1000))]
    at = template[0].index(b'"id":"') + 6
    sent, started = 0, time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while sent < due:
            seq = first + sent
            body = template[sent % len(template)]
            # a fresh id per datagram: patch the 16 hex digits after "id":" in the template
            body = body[:at] + b"%016x" % seq + body[at + 16 :]
            try:
                sock.sendto(body, target)
            except BlockingIOError:
                continue
            sent += 1
        time.sleep(0.0005)
    return sent, time.perf_counter() - started


def process_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


def run_rate(rate: int, args: argparse.Namespace, stub_url: str, first: int) -> dict[str, Any]:
    sidecar, port = start_sidecar(stub_url, args)
    try:
        return measure(sidecar, port, rate, args, stub_url, first)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()


def measure(
    sidecar: subprocess.Popen[str], port: int, rate: int, args: argparse.Namespace, stub_url: str,
    first: int,
) -> dict[str, Any]:
    before = get_json(f"{stub_url}/stub/counts")
    sent, elapsed = send(port, rate, args.seconds, first)
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2.5:
        now = get_json(f"{stub_url}/stub/counts")["distinct"] - before["distinct"]
        if now != last:
            last, stable_since = now, time.monotonic()
        if now >= sent:
            break
        time.sleep(0.1)
    counts = get_json(f"{stub_url}/stub/counts")
    cpu, rss = process_usage(sidecar.pid)
    sidecar.send_signal(signal.SIGTERM)
    _, err = sidecar.communicate(timeout=30)
    summary = next(
        (json.loads(line) for line in err.splitlines() if '"sidecar stopped"' in line), {}
    )
    delivered = counts["distinct"] - before["distinct"]
    return {
        "rate": rate, "sent": sent, "send_rate": sent / elapsed, "delivered": delivered,
        "duplicates": counts["delivered"] - before["delivered"] - delivered,
        "lost": sent - delivered, "cpu": cpu, "rss": rss, "exit": sidecar.returncode,
        "dropped": summary.get("dropped", {}), "received": summary.get("received"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rates", default="5000,10000,20000,40000", help="documents per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--workers", type=int, default=4, help="sidecar --workers")
    parser.add_argument("--memory-limit", type=int, default=32, help="sidecar --memory-limit MB")
    parser.add_argument("--receive-buffer", type=int, default=16, help="sidecar --receive-buffer MB")
    parser.add_argument("--capacity-seconds", type=float, default=2.0, help="stub capacity check")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, document: {len(HEADER + document(0))} bytes per datagram")
    capacity = measure_capacity(args.capacity_seconds)
    print(f"upstream stub capacity (alone, 4 connections): {capacity:,.0f} docs/s")
    stub, stub_url = start_stub()
    try:
        print(f"{'rate/s':>7} {'sent':>8} {'sent/s':>8} {'delivered':>9} {'lost':>7} {'loss%':>6} "
              f"{'dup':>4} {'cpu s':>6} {'cpu/s':>6} {'peakRSS':>8}  sidecar drops")
        first = 0
        for rate in (int(r) for r in args.rates.split(",")):
            r = run_rate(rate, args, stub_url, first)
            first += r["sent"]
            print(f"{rate:>7} {r['sent']:>8} {r['send_rate']:>8.0f} {r['delivered']:>9} "
                  f"{r['lost']:>7} {100 * r['lost'] / r['sent']:>6.2f} {r['duplicates']:>4} "
                  f"{r['cpu']:>6.2f} {r['cpu'] / args.seconds:>6.2f} {r['rss']:>6.1f}MB  "
                  f"{r['dropped'] or '-'} exit={r['exit']}", flush=True)
    finally:
        stub.terminate()


if __name__ == "__main__":
    main()
