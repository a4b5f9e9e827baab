"""What SigV4 signing adds to a cold start: OTLP traces to a Lambda-like process, signed or not.

Each sample is a fresh interpreter with credentials in the environment (as Lambda gives them). It
times ``import tracekit`` + ``configure`` (OTLP exporter, ``TRACEKIT_OTLP_SIGV4=off`` or ``xray``),
then the first export: one span and ``force_flush`` to a local OTLP/HTTP sink. With signing, the
first export also imports botocore's session and signer, resolves the credential chain and signs.
The variants alternate within each round; medians count.
Run: .venv/bin/python bench/bench_otlp_sigv4.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import tracekit
tracekit.configure(exporters=["otlp"])
t1 = time.perf_counter()
with tracekit.span("first"):
    pass
ok = tracekit.force_flush()
t2 = time.perf_counter()
print(json.dumps({"init": (t1 - t0) * 1000, "export": (t2 - t1) * 1000, "ok": ok,
                  "botocore": "botocore.auth" in sys.modules, "boto3": "boto3" in sys.modules}))
"""
VARIANTS = ("off", "xray")


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


def sample(url: str, mode: str) -> dict[str, float]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ACCESS_KEY_ID": "AKIDBENCH0000000000", "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_SESSION_TOKEN": "bench-token", "AWS_REGION": "us-east-1",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url, "TRACEKIT_OTLP_SIGV4": mode,
        "OTEL_TRACES_SAMPLER": "always_on", "OTEL_SERVICE_NAME": "bench",
    }
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    if not result["ok"] or result["boto3"] or result["botocore"] != (mode == "xray"):
        raise SystemExit(f"unexpected sample for {mode}: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in VARIANTS}
    for _ in range(args.rounds):
        for mode in VARIANTS:
            samples[mode].append(sample(url, mode))
    server.shutdown()
    print(f"OTLP cold start, {args.rounds} interleaved rounds (Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs); median ms")
    print(f"{'TRACEKIT_OTLP_SIGV4':<20}{'import+configure':>18}{'1st export':>12}{'total':>9}")
    medians = {}
    for mode, rows in samples.items():
        init = statistics.median(r["init"] for r in rows)
        export = statistics.median(r["export"] for r in rows)
        total = statistics.median(r["init"] + r["export"] for r in rows)
        medians[mode] = total
        print(f"{mode:<20}{init:>18.1f}{export:>12.1f}{total:>9.1f}")
    print(f"signing adds {medians['xray'] - medians['off']:.1f} ms (median totals), all of it in the first "
          "export (botocore imported there, never boto3)")


if __name__ == "__main__":
    main()
