"""Regenerate the README's screenshots of the trace viewer (docs/viewer-trace.png, docs/viewer-map.png).

Starts ``tracekit sidecar --local`` in this process on free ports with a temporary store, sends it
the example shop's traces (examples/viewer_sample.py) over UDP and its EMF lines over TCP, and
photographs the viewer with Debian's headless Chromium through Playwright:

    .venv/bin/python examples/viewer_screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tracekit.sidecar import ingest
from tracekit.sidecar.runtime import Sidecar
from tracekit.sidecar.settings import Settings
from viewer_sample import send, shop_trace

ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    free = ("127.0.0.1", 0)
    settings = replace(Settings(), local=True, local_db=Path(tempfile.mkdtemp()) / "traces.db",
                       udp_address=free, tcp_address=free, admin_address=free, emf_address=free,
                       otlp_address=None, log_level="warning")
    sidecar = Sidecar(settings)
    ingest.attach(sidecar)
    sidecar.start()
    emf = next(listener for listener in sidecar.listeners if listener.name == "emf")
    now = time.time()
    failed = ""
    for number in range(1, 13):
        trace_id, documents, line = shop_trace(number, now - 240 + number * 15, fail=number in (5, 11))
        send(sidecar.udp.address(), emf.address(), documents, [line])
        failed = trace_id if number == 11 else failed
    time.sleep(0.5)
    sidecar.sink.flush(5)
    url = "http://{}:{}/".format(*sidecar.admin.address())
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 560})
        page.goto(f"{url}#/trace/{failed}")
        page.click("#waterfall .bar >> nth=6")
        page.screenshot(path=str(out / "viewer-trace.png"))
        page.goto(f"{url}#/map")
        page.wait_for_selector("#map .node")
        page.set_viewport_size({"width": 1200, "height": 420})
        page.screenshot(path=str(out / "viewer-map.png"))
        browser.close()
    sidecar.shutdown()
    for name in ("viewer-trace.png", "viewer-map.png"):
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs")
