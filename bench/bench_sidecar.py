"""Load benchmark for ``tracekit sidecar``, against the X-Ray daemon when given its binary.

~1 KB documents over UDP at fixed rates, each with a unique id. For each rate a fresh sidecar
process (and, with ``--daemon``, a fresh daemon process) forwards to the fast X-Ray stub
(``bench/xray_stub.py``, its own process; its capacity is measured first and printed), which counts
the distinct documents delivered. The load comes from ``bench/udpload`` (Go, sendmmsg), built here
into a cache directory so that the receiver, not the sender, saturates; without Go a Python sender
stands in and says so. Sender, stub and receiver share the machine's cores.

    .venv/bin/python bench/bench_sidecar.py [--rates 20000,40000,80000] [--seconds 10]
        [--daemon PATH/TO/xray]

Targets printed per rate with ``--daemon``: delivered >= the daemon's, peak RSS <= a third of its.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from xray_stub import document, measure_capacity  # noqa: E402

HEADER = b'{"format":"json","version":1}\n'
TICKS = os.sysconf("SC_CLK_TCK")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tracekit-bench"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}


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


# -- the load sender -------------------------------------------------------------------------


def build_udpload() -> Path | None:
    """Build bench/udpload into the cache (rebuilt when its source changes); None without Go."""
    go = shutil.which("go")
    if go is None:
        return None
    source = HERE / "udpload" / "main.go"
    binary = CACHE / "udpload"
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GO111MODULE": "off", "GOCACHE": str(CACHE / "gocache")}
    subprocess.run([go, "build", "-o", str(binary), str(source)], env=env, check=True)
    return binary


def send_go(binary: Path, port: int, rate: int, seconds: float, first: int) -> tuple[int, float]:
    out = subprocess.run(
        [str(binary), "-port", str(port), "-rate", str(rate), "-seconds", str(seconds),
         "-first", str(first)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # "sent N elapsed S"
    return int(out[1]), float(out[3])


def send_python(port: int, rate: int, seconds: float, first: int) -> tuple[int, float]:
    """Fallback without Go: saturates one core near 80,000/s, so it measures itself there."""
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


class Sender:
    """The Go sender when Go is installed, else the Python one; ``cpu`` is its last run's CPU time."""

    def __init__(self) -> None:
        self.binary = build_udpload()
        self.cpu = 0.0
        self.label = (
            f"bench/udpload (Go, sendmmsg), built in {self.binary.parent}" if self.binary
            else "Python sender (FALLBACK: go not found; it, not the receiver, saturates first)"
        )

    def send(self, port: int, rate: int, seconds: float, first: int) -> tuple[int, float]:
        if self.binary is None:
            before = time.process_time()
            result = send_python(port, rate, seconds, first)
            self.cpu = time.process_time() - before
            return result
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = send_go(self.binary, port, rate, seconds, first)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only the sender was reaped meanwhile
        self.cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return result


# -- the receivers ---------------------------------------------------------------------------


def start_sidecar(stub_url: str, args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    udp, admin = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    cmd = [
        sys.executable, "-m", "tracekit.cli", "sidecar", "--region", "us-east-1",
        "--endpoint-url", stub_url, "--udp-address", f"127.0.0.1:{udp}",
        "--tcp-address", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
        "--admin-address", f"127.0.0.1:{admin}",
        # every receiver on, as deployed, on free ports (the defaults may be taken on this machine)
        "--otlp-address", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
        "--emf-address", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}",
    ]
    for option in ("workers", "memory_limit", "receive_buffer"):  # else the sidecar's defaults
        if getattr(args, option) is not None:
            cmd += ["--" + option.replace("_", "-"), str(getattr(args, option))]
    proc = subprocess.Popen(cmd, env={**os.environ, **FAKE_CREDENTIALS}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            get_json(f"http://127.0.0.1:{admin}/health")
            return proc, udp
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("sidecar did not become healthy")


def start_daemon(stub_url: str, args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    """The X-Ray daemon with its defaults, in local mode, forwarding to the stub.

    Its log level is ``warn``: its default (``prod``) writes a line per batch, which would cost it.
    """
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    config = Path(tempfile.mkdtemp(prefix="bench-xray-")) / "cfg.yaml"
    config.write_text(
        f'Version: 2\nRegion: "us-east-1"\nEndpoint: "{stub_url}"\nLocalMode: true\n'
        f'Socket:\n  UDPAddress: "127.0.0.1:{udp}"\n  TCPAddress: "127.0.0.1:{tcp}"\n'
        'Logging:\n  LogLevel: "warn"\n'
    )
    proc = subprocess.Popen(
        [args.daemon, "--config", str(config)], env={**os.environ, **FAKE_CREDENTIALS},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and proc.poll() is None:
        if udp_bound(udp):
            return proc, udp
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the daemon did not bind 127.0.0.1:{udp}: {proc.communicate()[1].strip()}")


def udp_bound(port: int) -> bool:
    """Whether some process listens on UDP 127.0.0.1:port (from /proc, without racing a bind)."""
    wanted = f"0100007F:{port:04X}"
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1] == wanted for line in lines)


def process_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


def run_rate(target: str, rate: int, args: argparse.Namespace, sender: Sender, stub: subprocess.Popen[str],
             stub_url: str, first: int) -> dict[str, Any]:  # fmt: skip
    start = start_daemon if target == "daemon" else start_sidecar
    proc, port = start(stub_url, args)
    try:
        stub_before = process_usage(stub.pid)[0]
        result = measure(proc, port, rate, args, sender, stub_url, first)
        return {**result, "stub_cpu": process_usage(stub.pid)[0] - stub_before}
    finally:
        if proc.poll() is None:
            proc.kill()


def measure(
    proc: subprocess.Popen[str], port: int, rate: int, args: argparse.Namespace, sender: Sender,
    stub_url: str, first: int,
) -> dict[str, Any]:
    before = get_json(f"{stub_url}/stub/counts")
    sent, elapsed = sender.send(port, rate, args.seconds, first)
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2.5:
        now = get_json(f"{stub_url}/stub/counts")["distinct"] - before["distinct"]
        if now != last:
            last, stable_since = now, time.monotonic()
        if now >= sent:
            break
        time.sleep(0.1)
    counts = get_json(f"{stub_url}/stub/counts")
    cpu, rss = process_usage(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    summary = next(
        (json.loads(line) for line in err.splitlines() if '"sidecar stopped"' in line), {}
    )
    delivered = counts["distinct"] - before["distinct"]
    return {
        "sent": sent, "send_rate": sent / elapsed, "delivered": delivered,
        "duplicates": counts["delivered"] - before["delivered"] - delivered,
        "lost": sent - delivered, "cpu": cpu, "rss": rss, "exit": proc.returncode,
        "dropped": summary.get("dropped", {}), "sender_cpu": sender.cpu,
    }


def row(rate: int, target: str, r: dict[str, Any], seconds: float) -> str:
    return (
        f"{rate:>7} {target:<8} {r['sent']:>8} {r['send_rate']:>8.0f} {r['delivered']:>9} "
        f"{r['lost']:>7} {100 * r['lost'] / r['sent']:>6.2f} {r['duplicates']:>4} "
        f"{r['cpu'] / seconds:>6.2f} {r['rss']:>6.1f}MB {r['sender_cpu'] / seconds:>7.2f} "
        f"{r['stub_cpu'] / seconds:>7.2f}  "
        f"{r['dropped'] or '-'} exit={r['exit']}"
    )


def verdict(ours: dict[str, Any], daemon: dict[str, Any]) -> str:
    delivered = ours["delivered"] / max(daemon["delivered"], 1)
    rss = ours["rss"] / daemon["rss"]
    met = {True: "met", False: "NOT met"}
    return (
        f"{'':>7} tracekit/daemon: delivered {delivered:.3f}x (>= 1: "
        f"{met[ours['delivered'] >= daemon['delivered']]}), peak RSS {rss:.2f}x "
        f"(<= 1/3: {met[3 * ours['rss'] <= daemon['rss']]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rates", default="20000,40000,80000", help="documents per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--workers", type=int, help="sidecar --workers (default: its own)")
    parser.add_argument("--memory-limit", type=int, help="sidecar --memory-limit MB (default: its own)")
    parser.add_argument("--receive-buffer", type=int, help="sidecar --receive-buffer MB (default: its own)")
    parser.add_argument("--capacity-seconds", type=float, default=2.0, help="stub capacity check")
    parser.add_argument("--daemon", metavar="PATH", help="X-Ray daemon binary to run the same rates against")
    args = parser.parse_args()
    if args.daemon and not os.access(args.daemon, os.X_OK):
        parser.error(f"--daemon {args.daemon}: not an executable file")
    targets = ["tracekit", "daemon"] if args.daemon else ["tracekit"]
    sender = Sender()
    print(f"cores: {os.cpu_count()}, document: {len(HEADER + document(0))} bytes per datagram")
    print(f"sender: {sender.label}")
    capacity = measure_capacity(args.capacity_seconds)
    print(f"upstream stub capacity (alone, 4 connections): {capacity:,.0f} docs/s")
    stub, stub_url = start_stub()
    try:
        print(f"{'rate/s':>7} {'target':<8} {'sent':>8} {'sent/s':>8} {'delivered':>9} {'lost':>7} "
              f"{'loss%':>6} {'dup':>4} {'cpu/s':>6} {'peakRSS':>8} {'sendcpu':>7} {'stubcpu':>7}  drops")
        first = 0
        for rate in (int(r) for r in args.rates.split(",")):
            results = {}
            for target in targets:
                results[target] = r = run_rate(target, rate, args, sender, stub, stub_url, first)
                first += r["sent"]
                print(row(rate, target, r, args.seconds), flush=True)
            if args.daemon:
                print(verdict(results["tracekit"], results["daemon"]), flush=True)
    finally:
        stub.terminate()


if __name__ == "__main__":
    main()
