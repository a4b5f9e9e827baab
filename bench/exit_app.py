"""A Flask app that serves 30 traced requests and exits: ``bench_faults.py`` and the exit tests time
from its ``LAST_REQUEST`` line to the end of its process. ``STALL_RESOLVER=1`` makes looking up
``nonexistent.invalid`` take 1 s (a slow resolver), as on hosts whose DNS times out."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import flask
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import tracekit
from tracekit.web.flask import instrument

_real_getaddrinfo = socket.getaddrinfo


def _slow_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host in (b"nonexistent.invalid", "nonexistent.invalid"):
        time.sleep(1.0)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _real_getaddrinfo(host, *args, **kwargs)


if os.environ.get("STALL_RESOLVER"):
    socket.getaddrinfo = _slow_getaddrinfo

tracekit.configure("exit-app", sampler=ALWAYS_ON)
app = flask.Flask(__name__)
instrument(app)


@app.get("/work")
def work() -> str:
    with tracekit.span("inner"):
        return "ok"


client = app.test_client()
for _ in range(30):
    assert client.get("/work").status_code == 200
print("LAST_REQUEST", time.monotonic(), flush=True)
