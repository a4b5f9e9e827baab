"""The trace viewer's API over a full local store: 10,000 traces of the example shop (2 documents,
7 entities each, every 20th failed), written through the sidecar's store, then the page requests
timed (median of 5) as the browser makes them.

    .venv/bin/python bench/bench_viewer.py [--traces 10000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from tracekit.sidecar.store import LocalStore
from tracekit.sidecar.viewer.api import Viewer
from viewer_sample import shop_trace


def timed(viewer: Viewer, target: str) -> tuple[float, bytes]:
    runs = []
    for _ in range(5):
        began = time.perf_counter()
        reply = viewer.respond(target)
        runs.append(time.perf_counter() - began)
        assert reply is not None and reply[0] == 200, target
    return statistics.median(runs) * 1000, reply[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=10_000)
    count = parser.parse_args().traces
    db = Path(tempfile.mkdtemp()) / "traces.db"
    store = LocalStore(db, retention=count, max_bytes=256 << 20)
    now = time.time()
    began = time.perf_counter()
    for number in range(count):
        _, documents, _ = shop_trace(number, now - 600 + number * 600 / count, fail=number % 20 == 0)
        for document in documents:
            store.submit(json.dumps(document).encode())
    assert store.flush(300)
    print(f"stored {count:,} traces ({2 * count:,} documents) in {time.perf_counter() - began:.1f} s")
    store.close(5)
    viewer = Viewer(db)
    first_ms, body = timed(viewer, "/api/traces?limit=50")
    page = json.loads(body)
    newest = page["traces"][0]["trace_id"]
    for _ in range(count // 100 - 1):  # walk to the middle page as "Older" does
        reply = viewer.respond("/api/traces?limit=50&after=" + quote(page["next"]))
        assert reply is not None
        page = json.loads(reply[2])
    rows = [("first page (50)", first_ms)]
    for label, target in (
        (f"page {count // 100 + 1} by cursor", "/api/traces?limit=50&after=" + quote(page["next"])),
        ("filtered: fault + text", "/api/traces?limit=50&status=fault&q=payments"),
        ("filtered: annotation", "/api/traces?limit=50&annotation=" + quote("customer=c-3")),
        ("one trace", f"/api/traces/{newest}"),
        ("service map, all", "/api/map?minutes=15"),
        ("status", "/api/status"),
    ):
        rows.append((label, timed(viewer, target)[0]))
    for label, ms in rows:
        print(f"{label:28} {ms:8.1f} ms")


if __name__ == "__main__":
    main()
