"""Helpers for the sidecar tests: settings on free ports, UDP/HTTP calls, polling."""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracekit.sidecar.settings import Settings
from tracekit.xray.protocol import HEADER

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from flaky_upstream import FlakyUpstream  # noqa: E402
from support.sigv4 import sigv4_verifies  # noqa: E402
from xray_stub import XRayStub, document  # noqa: E402

__all__ = ["HEADER", "FlakyUpstream", "XRayStub", "document", "sigv4_verifies"]

FREE = ("127.0.0.1", 0)
BASE = Settings(
    udp_address=FREE, tcp_address=FREE, admin_address=FREE, region="us-east-1",
    telemetry_interval=60.0, batch_timeout=0.05, shutdown_timeout=5.0,
)


def send_udp(address: tuple[str, int], *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            sock.sendto(datagram, address)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until truthy; fail the test with what it last returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"condition not met within {timeout}s"
            return value
        time.sleep(0.02)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:  # not listening (yet)
        return 0, b""


def post(url: str, body: bytes = b"{}") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def url(address: tuple[str, int], path: str) -> str:
    return f"http://{address[0]}:{address[1]}{path}"
