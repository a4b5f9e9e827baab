"""CPU of one PutTraceSegments call of the sidecar's sender, piece by piece.

A batch of 50 documents of ~1 KB (as ``bench_sidecar.py`` sends) goes to the X-Ray stub
(``bench/xray_stub.py``, its own process, so that only the sender's CPU is counted): the request
body, the botocore SigV4 signature, the signed POST (signature and HTTP exchange), each timed with
``time.process_time`` over ``--calls`` calls.

    .venv/bin/python bench/bench_sender_call.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from botocore.credentials import Credentials  # noqa: E402

from tracekit._shared.sigv4 import SignedHTTP  # noqa: E402
from tracekit.xray.sender import PATH, request_body  # noqa: E402
from xray_stub import document  # noqa: E402


def cpu_us(calls: int, work: Callable[[], object]) -> float:
    work()
    start = time.process_time()
    for _ in range(calls):
        work()
    return (time.process_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="calls timed per piece")
    args = parser.parse_args()
    stub = subprocess.Popen(
        [sys.executable, str(HERE / "xray_stub.py"), "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert stub.stdout is not None
        url = f"http://127.0.0.1:{stub.stdout.readline().strip()}"
        batch: list[str | bytes] = [document(i, 1030) for i in range(50)]
        http = SignedHTTP("xray", "us-east-1", url, credentials=Credentials("bench", "bench"))
        body = request_body(batch)
        pieces = {
            "request body": lambda: request_body(batch),
            "SigV4 signature": lambda: http.sign(url + PATH, body, {"Content-Type": "application/json"}),
            "signed POST": lambda: http.post(PATH, body),
        }
        results = {name: cpu_us(args.calls, work) for name, work in pieces.items()}
    finally:
        stub.terminate()
        stub.wait()
    print(f"PutTraceSegments call, 50 documents, {len(body):,}-byte body, CPU per call:")
    for name, value in results.items():
        print(f"  {name:<16} {value:6.1f} us")
    exchange = results["signed POST"] - results["SigV4 signature"]
    print(f"  {'HTTP exchange':<16} {exchange:6.1f} us (signed POST - signature)")
    total = results["request body"] + results["signed POST"]
    print(f"  {'total':<16} {total:6.1f} us, {total / 50:.1f} us per document")


if __name__ == "__main__":
    main()
