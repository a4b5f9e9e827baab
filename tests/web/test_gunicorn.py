"""A real pre-forking WSGI server: tracekit configured in the master works in every worker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.udp_receiver import UdpReceiver
from support.xray_schema import validate_document

HERE = Path(__file__).resolve().parent


@pytest.fixture
def gunicorn(xray_daemon: UdpReceiver) -> Iterator[str]:
    env = {
        **os.environ,
        "AWS_XRAY_DAEMON_ADDRESS": xray_daemon.address,
        "OTEL_TRACES_SAMPLER": "always_on",
    }
    command = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [*command, "--chdir", str(HERE), "gunicorn_app:app"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "Listening at: " in line:
                yield line.split("Listening at: ")[1].split()[0]
                break
        else:
            pytest.fail("gunicorn did not start")
    finally:
        proc.terminate()
        proc.wait(10)


def test_forked_workers_send_one_segment_per_request(
    gunicorn: str, xray_daemon: UdpReceiver
) -> None:
    with httpx.Client(base_url=gunicorn) as client:
        replies = [client.get(f"/orders/{n}", headers={"Connection": "close"}) for n in range(8)]
    assert all(r.status_code == 200 and r.headers["X-Amzn-Trace-Id"] for r in replies)
    docs = xray_daemon.wait_for(8, timeout=10)
    for doc in docs:
        validate_document(doc)
        assert doc["name"] == "gunicorn-shop"
        assert [s["name"] for s in doc["subsegments"]] == ["load-order"]
    roots = {r.headers["X-Amzn-Trace-Id"].removeprefix("Root=") for r in replies}
    assert {d["trace_id"] for d in docs} == roots
