"""Request overhead of tracekit's Flask and FastAPI middleware against the peers people use today.

The same Flask app (and the same FastAPI app) is built several ways: bare, tracekit (X-Ray documents
over UDP), aws-xray-sdk's XRayMiddleware (Flask only: the SDK has no ASGI support) and
OpenTelemetry's instrumentation with a BatchSpanProcessor and the OTLP HTTP exporter. Requests go
straight into the WSGI/ASGI callable (no server, no client: the least noise around the middleware).
Variants run interleaved, several rounds, in shuffled order. CPU per request is process time over a
window that ends with a flush, so exporter threads are counted. Receivers (UDP and OTLP HTTP sinks)
run in a child process, so their CPU is not. Run with: .venv-bench/bin/python bench/bench_web.py

To see where tracekit's share goes: ``.venv-bench/bin/py-spy record -r 2000 -f raw -o out.txt --
.venv-bench/bin/python bench/bench_web.py --only flask`` (py-spy counts a thread waiting for the
GIL inside a socket call as busy; the CPU figures here come from process time).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GOAL = 0.3
"""tracekit's overhead above bare must be at most this fraction of the lighter peer's."""


# -- the application under test, identical for every variant ----------------------------------


def flask_app() -> Any:
    from flask import Flask, jsonify

    app = Flask("bench")

    @app.get("/orders/<order_id>")
    def order(order_id: str) -> Any:
        return jsonify(id=order_id, items=[{"sku": "A-1", "qty": 2}], total=42.5)

    return app


def fastapi_app() -> Any:
    from fastapi import FastAPI

    try:  # FastAPI >= 0.16x traces by itself once any tracer provider is global: keep it bare
        app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})
    except TypeError:
        app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, Any]:
        return {"id": order_id, "items": [{"sku": "A-1", "qty": 2}], "total": 42.5}

    return app


# -- the variants ------------------------------------------------------------------------------


class Sinks:
    """A child process holding a UDP sink (X-Ray daemon stand-in) and an OTLP HTTP sink."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sinks"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.udp = ("127.0.0.1", int(ports["udp"]))
        self.otlp = f"http://127.0.0.1:{ports['otlp']}/v1/traces"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def setup_tracekit(sinks: Sinks) -> Callable[[], None]:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    import tracekit

    tracekit.configure(service="bench", exporters=["xray"], daemon_udp=sinks.udp, sampler=ALWAYS_ON)
    return lambda: tracekit.force_flush()


def otel_provider(sinks: Sinks) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=sinks.otlp)))
    return provider


def flask_variants(sinks: Sinks) -> dict[str, tuple[Any, Callable[[], None]]]:
    from aws_xray_sdk.core import xray_recorder
    from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    import tracekit.flask

    nothing: Callable[[], None] = lambda: None  # noqa: E731
    variants: dict[str, tuple[Any, Callable[[], None]]] = {"bare": (flask_app(), nothing)}
    app = tracekit.flask.instrument(flask_app())
    variants["tracekit"] = (app, setup_tracekit(sinks))
    xray_recorder.configure(
        service="bench",
        sampling=False,
        daemon_address=f"{sinks.udp[0]}:{sinks.udp[1]}",
        context_missing="LOG_ERROR",
    )
    app = flask_app()
    XRayMiddleware(app, xray_recorder)
    variants["aws-xray-sdk"] = (app, nothing)
    provider = otel_provider(sinks)
    app = flask_app()
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    variants["opentelemetry"] = (app, lambda: provider.force_flush())
    return variants


def fastapi_variants(sinks: Sinks) -> dict[str, tuple[Any, Callable[[], None]]]:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    import tracekit.fastapi

    nothing: Callable[[], None] = lambda: None  # noqa: E731
    variants: dict[str, tuple[Any, Callable[[], None]]] = {"bare": (fastapi_app(), nothing)}
    variants["tracekit"] = (tracekit.fastapi.instrument(fastapi_app()), setup_tracekit(sinks))
    provider = otel_provider(sinks)
    app = fastapi_app()
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    variants["opentelemetry"] = (app, lambda: provider.force_flush())
    return variants


# -- drivers: one request straight into the callable -------------------------------------------

HEADERS = {"Host": "shop.example.com", "User-Agent": "bench/1.0", "Accept": "application/json"}


def wsgi_driver(app: Any) -> Callable[[int], None]:
    from werkzeug.test import EnvironBuilder

    template = EnvironBuilder(path="/orders/42", headers=HEADERS).get_environ()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        assert status.startswith("200"), status
        return None

    def run(n: int) -> None:
        for _ in range(n):
            environ = dict(template)
            environ["wsgi.input"] = io.BytesIO(b"")
            body = app(environ, start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return run


def asgi_driver(app: Any, loop: asyncio.AbstractEventLoop) -> Callable[[int], None]:
    headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
    template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/orders/42",
        "raw_path": b"/orders/42",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("10.0.0.7", 50000),
        "server": ("shop.example.com", 80),
    }
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    async def many(n: int) -> None:
        for _ in range(n):
            await app(dict(template), receive, send)

    return lambda n: loop.run_until_complete(many(n))


# -- measurement -------------------------------------------------------------------------------


def measure(
    drivers: dict[str, tuple[Callable[[int], None], Callable[[], None]]], n: int, rounds: int
) -> dict[str, list[float]]:
    """CPU µs per request (all threads of this process), per variant, one figure per round."""
    results: dict[str, list[float]] = {name: [] for name in drivers}
    for run, _flush in drivers.values():
        run(200)  # warm-up: imports, caches, lazy sockets
    order = list(drivers)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            run, flush = drivers[name]
            gc.collect()
            start = time.process_time()
            run(n)
            flush()
            results[name].append((time.process_time() - start) / n * 1e6)
    return results


def report(title: str, results: dict[str, list[float]], n: int, rounds: int) -> float | None:
    median = {name: statistics.median(values) for name, values in results.items()}
    bare = median["bare"]
    print(f"\n{title}: CPU µs per request, median of {rounds} rounds x {n} requests")
    print(f"  {'variant':<16}{'median':>9}{'min':>9}{'max':>9}{'overhead':>10}")
    for name, values in results.items():
        extra = "" if name == "bare" else f"{median[name] - bare:>+10.1f}"
        print(f"  {name:<16}{median[name]:>9.1f}{min(values):>9.1f}{max(values):>9.1f}{extra}")
    ours = median["tracekit"] - bare
    peers = {name: median[name] - bare for name in results if name not in ("bare", "tracekit")}
    for name, overhead in peers.items():
        print(f"  tracekit overhead / {name} overhead = {ours / overhead:.2f}")
    lighter = min(peers.values())
    ratio = ours / lighter
    verdict = "met" if ratio <= GOAL else "NOT met"
    print(f"  goal (<= {GOAL} x the lighter peer's overhead): {verdict} ({ratio:.2f})")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round and variant")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--only", choices=("flask", "fastapi"), help="one framework only")
    parser.add_argument("--sinks", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sinks:
        return serve_sinks()
    import logging

    logging.getLogger("aws_xray_sdk").setLevel(logging.ERROR)
    sinks = Sinks()
    try:
        print(f"python {sys.version.split()[0]}, {_versions()}")
        if args.only in (None, "flask"):
            variants = flask_variants(sinks)
            drivers = {name: (wsgi_driver(app), flush) for name, (app, flush) in variants.items()}
            report(
                "Flask", measure(drivers, args.requests, args.rounds), args.requests, args.rounds
            )
        if args.only in (None, "fastapi"):
            loop = asyncio.new_event_loop()
            variants = fastapi_variants(sinks)
            drivers = {n: (asgi_driver(app, loop), flush) for n, (app, flush) in variants.items()}
            report(
                "FastAPI", measure(drivers, args.requests, args.rounds), args.requests, args.rounds
            )
            print("  (aws-xray-sdk: no ASGI middleware, so not measured for FastAPI)")
        _check_emitted()
    finally:
        sinks.close()
    return 0


def _check_emitted() -> None:
    import tracekit

    counts = tracekit.stats()
    sent = counts.get("xray.documents_sent", 0)
    dropped = {k: v for k, v in counts.items() if "dropped" in k or k.startswith("errors.")}
    print(f"\ntracekit: {sent} X-Ray documents sent over UDP; drops/errors: {dropped or 'none'}")


def _versions() -> str:
    from importlib.metadata import version

    names = (
        "flask",
        "fastapi",
        "aws-xray-sdk",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation",
    )
    return ", ".join(f"{name} {version(name)}" for name in names)


# -- the sinks' child process ------------------------------------------------------------------


class _OtlpSink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def serve_sinks() -> int:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    udp.bind(("127.0.0.1", 0))
    _OtlpSink.protocol_version = "HTTP/1.1"
    http = ThreadingHTTPServer(("127.0.0.1", 0), _OtlpSink)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(json.dumps({"udp": udp.getsockname()[1], "otlp": http.server_address[1]}), flush=True)
    while True:
        udp.recv(65536)


if __name__ == "__main__":
    sys.exit(main())
