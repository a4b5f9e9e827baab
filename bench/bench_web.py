"""Request overhead of tracekit's Flask and FastAPI middleware against the peers people use today.

The same Flask app (and the same FastAPI app) is built several ways: bare, tracekit (X-Ray documents
over UDP), aws-xray-sdk's XRayMiddleware (Flask only: the SDK has no ASGI support; sampling off, so
it records every request) and OpenTelemetry's instrumentation with a BatchSpanProcessor and the
OTLP HTTP exporter. Every variant samples every request and emits to its own local sink (UDP for
X-Ray documents, OTLP/HTTP for spans), in a child process whose CPU is not counted; the sinks'
counts are checked against the requests made.

Two modes, both interleaving the variants over several rounds (shuffled) and reporting medians:

* default: requests go straight into the WSGI/ASGI callable (no server, no client: the least noise
  around the middleware); CPU is this process's time over a window that ends with a flush.
* ``--served``: each variant runs in its own real server on 127.0.0.1 (Flask under gunicorn, one
  sync worker; FastAPI under uvicorn, one worker) and a separate client process sends the requests;
  CPU is the server process tree's time on a CPU (every thread's schedstat, so exporter threads count) over a
  window that ends when the variant's sink has received everything for the window's requests.

Run with: .venv-bench/bin/python bench/bench_web.py [--served]

To see where tracekit's share goes: ``.venv-bench/bin/py-spy record -r 1000 -f raw -o out.txt --
.venv-bench/bin/python bench/bench_web.py --profile tracekit`` (py-spy counts a thread waiting for the
GIL inside a socket call as busy; the CPU figures here come from process time). In served mode,
``--serve flask tracekit --port 8000 --udp 2000`` runs one server alone, for ``py-spy record --pid``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import http.client
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GOALS = {"flask": ("aws-xray-sdk", 0.5), "fastapi": ("opentelemetry", 0.25)}
"""tracekit's overhead above bare must be at most this fraction of this peer's."""
PATH = "/orders/42"
HEADERS = {"Host": "shop.example.com", "User-Agent": "bench/1.0", "Accept": "application/json"}
VARIANTS = {
    "flask": ("bare", "tracekit", "aws-xray-sdk", "opentelemetry"),
    "fastapi": ("bare", "tracekit", "opentelemetry"),
}
PER_REQUEST = {("fastapi", "opentelemetry"): 3}
"""Documents or spans a variant's sink gets per request when not 1 (bare: 0). OpenTelemetry's ASGI
instrumentation adds an internal span for each ``send`` (response start and body)."""
WARM_UP = 200


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


@dataclass(frozen=True)
class Sink:
    """Where one variant emits: a UDP port (X-Ray daemon stand-in) and an OTLP/HTTP port."""

    udp: int
    otlp: int


def per_request(framework: str, variant: str) -> int:
    return 0 if variant == "bare" else PER_REQUEST.get((framework, variant), 1)


def build(framework: str, variant: str, sink: Sink) -> tuple[Any, Callable[[], None]]:
    """``variant`` of ``framework``'s app, and what flushes its exporter."""
    app = flask_app() if framework == "flask" else fastapi_app()
    if variant == "bare":
        return app, lambda: None
    if variant == "tracekit":
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        import tracekit
        import tracekit.fastapi
        import tracekit.flask

        daemon = ("127.0.0.1", sink.udp)
        tracekit.configure(service="bench", exporters=["xray"], daemon_udp=daemon, sampler=ALWAYS_ON)
        module = tracekit.flask if framework == "flask" else tracekit.fastapi
        return module.instrument(app), lambda: tracekit.force_flush()
    if variant == "aws-xray-sdk":
        from aws_xray_sdk.core import xray_recorder
        from aws_xray_sdk.ext.flask.middleware import XRayMiddleware

        xray_recorder.configure(
            service="bench",
            sampling=False,
            daemon_address=f"127.0.0.1:{sink.udp}",
            context_missing="LOG_ERROR",
        )
        XRayMiddleware(app, xray_recorder)
        return app, lambda: None
    provider = otel_provider(sink)
    if framework == "flask":
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    else:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    return app, lambda: provider.force_flush()


def otel_provider(sink: Sink) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    endpoint = f"http://127.0.0.1:{sink.otlp}/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class Sinks:
    """A child process holding one UDP and one OTLP/HTTP sink per variant, counting what arrives."""

    def __init__(self, names: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sinks", *names],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ports = json.loads(self._line())
        self.sinks = {name: Sink(**ports[name]) for name in names}

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def counts(self) -> dict[str, int]:
        """Datagrams plus spans received so far, per variant."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("counts\n")
        self.proc.stdin.flush()
        counts: dict[str, int] = json.loads(self._line())
        return counts

    def wait(self, name: str, at_least: int, timeout: float = 30.0) -> bool:
        """Poll until ``name``'s sink has ``at_least`` items (OpenTelemetry exports every 5 s)."""
        deadline = time.monotonic() + timeout
        while self.counts()[name] < at_least:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


# -- in-process drivers: one request straight into the callable -------------------------------


def wsgi_driver(app: Any) -> Callable[[int], None]:
    from werkzeug.test import EnvironBuilder

    template = EnvironBuilder(path=PATH, headers=HEADERS).get_environ()

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


def profile_alone(variant: str, n: int) -> int:
    """``n`` requests into one Flask variant and nothing else, so that a profiler's shares are its own."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))  # datagrams nobody reads are dropped by the kernel, as with no daemon
        app, flush = build("flask", variant, Sink(udp.getsockname()[1], _free_port()))
        wsgi_driver(app)(n)
        flush()
    return 0


def asgi_driver(app: Any, loop: asyncio.AbstractEventLoop) -> Callable[[int], None]:
    headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
    template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
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


def run_in_process(framework: str, sinks: Sinks, n: int, rounds: int) -> dict[str, list[float]]:
    loop = asyncio.new_event_loop()
    windows: dict[str, Callable[[], float]] = {}
    for name in VARIANTS[framework]:
        app, flush = build(framework, name, sinks.sinks[name])
        run = wsgi_driver(app) if framework == "flask" else asgi_driver(app, loop)
        run(WARM_UP)  # imports, caches, lazy sockets
        windows[name] = _in_process_window(f"{framework}/{name}", run, flush, n)
    return interleave(windows, rounds)


BACKGROUND: dict[str, list[float]] = {}
"""Per variant and round, CPU µs per request of the threads other than the one serving requests
(exporters, tracekit's X-Ray worker): the split the report prints under the table."""


def _in_process_window(
    name: str, run: Callable[[int], None], flush: Callable[[], None], n: int
) -> Callable[[], float]:
    def window() -> float:
        gc.collect()
        start, background = time.process_time(), _cpu_seconds(os.getpid(), background=True)
        run(n)
        flush()
        background = _cpu_seconds(os.getpid(), background=True) - background
        BACKGROUND.setdefault(name, []).append(background / n * 1e6)
        return (time.process_time() - start) / n * 1e6

    return window


# -- served mode: real servers, a client process -----------------------------------------------


class Server:
    """One variant in its own server process (gunicorn sync worker or uvicorn) on 127.0.0.1."""

    def __init__(self, framework: str, variant: str, sink: Sink) -> None:
        self.framework = framework
        self.port = _free_port()
        args = ["--serve", framework, variant, "--port", str(self.port)]
        args += ["--udp", str(sink.udp), "--otlp", str(sink.otlp)]
        self.proc = subprocess.Popen([sys.executable, __file__, *args])
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{framework} {variant} server did not start") from None
                time.sleep(0.05)

    def cpu_seconds(self, *, background: bool = False) -> float:
        """CPU time of the server and its children (gunicorn's worker): all threads, or with
        ``background`` all but each process's main thread."""
        return sum(_cpu_seconds(pid, background=background) for pid in _tree(self.proc.pid))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Client:
    """A separate process sending keep-alive GET requests (gunicorn's sync worker closes each)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, port: int, n: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{port} {n}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"client: {answer or 'exited'}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def run_served(
    framework: str, sinks: Sinks, client: Client, n: int, rounds: int
) -> dict[str, list[float]]:
    windows: dict[str, Callable[[], float]] = {}
    servers: list[Server] = []
    try:
        for name in VARIANTS[framework]:
            server = Server(framework, name, sinks.sinks[name])
            servers.append(server)
            expected = sinks.counts()[name] + WARM_UP * per_request(framework, name)
            client.run(server.port, WARM_UP)
            sinks.wait(name, expected)
            items = n * per_request(framework, name)
            windows[name] = _served_window(server, client, sinks, name, items, n)
        return interleave(windows, rounds)
    finally:
        for server in servers:
            server.close()


def _served_window(
    server: Server, client: Client, sinks: Sinks, name: str, items: int, n: int
) -> Callable[[], float]:
    def window() -> float:
        expected = sinks.counts()[name] + items
        start, background = server.cpu_seconds(), server.cpu_seconds(background=True)
        client.run(server.port, n)
        if not sinks.wait(name, expected):
            print(f"  warning: {name}'s sink got fewer than {items} items in a window")
        background = server.cpu_seconds(background=True) - background
        BACKGROUND.setdefault(f"{server.framework}/{name}", []).append(background / n * 1e6)
        return (server.cpu_seconds() - start) / n * 1e6

    return window


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tree(pid: int) -> Iterator[int]:
    yield pid
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        return
    for child in children:
        yield from _tree(child)


def _cpu_seconds(pid: int, *, background: bool = False) -> float:
    """Time on a CPU of every thread of ``pid`` (``background``: all but its main thread), in ns
    from ``schedstat`` (``stat``'s user and system times count 10 ms ticks: ±5 µs a request over a
    2,000-request window)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        if background and task == str(pid):
            continue
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total / 1e9


def serve(framework: str, variant: str, port: int, sink: Sink) -> int:
    """The ``--serve`` child: one variant under its real server until terminated."""
    import logging

    logging.getLogger("aws_xray_sdk").setLevel(logging.ERROR)
    if framework == "fastapi":
        import uvicorn

        app = build(framework, variant, sink)[0]
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return 0
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {"bind": f"127.0.0.1:{port}", "workers": 1, "worker_class": "sync"}
            for key, value in {**options, "accesslog": None, "loglevel": "warning"}.items():
                self.cfg.set(key, value)

        def load(self) -> Any:  # in the worker, after the fork: exporters start there
            return build(framework, variant, sink)[0]

    Gunicorn().run()
    return 0


def client_loop() -> int:
    """The ``--client`` child: for each ``port n`` line on stdin, n GETs on one keep-alive
    connection (re-opened when the server closes it), then ``ok``."""
    for line in sys.stdin:
        port, n = (int(x) for x in line.split())
        conn = http.client.HTTPConnection("127.0.0.1", port)  # idle ones were closed by uvicorn
        for _ in range(n):
            conn.request("GET", PATH, headers=HEADERS)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                print(f"status {response.status} from port {port}", flush=True)
                return 1
        conn.close()
        print("ok", flush=True)
    return 0


# -- measurement and report --------------------------------------------------------------------


def interleave(windows: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """One figure per variant and round, the variants in a new random order each round."""
    results: dict[str, list[float]] = {name: [] for name in windows}
    order = list(windows)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            results[name].append(windows[name]())
    return results


def report(framework: str, results: dict[str, list[float]], n: int, rounds: int) -> None:
    title = "Flask" if framework == "flask" else "FastAPI"
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
    peer, goal = GOALS[framework]
    ratio = ours / peers[peer]
    verdict = "met" if ratio <= goal else "NOT met"
    print(f"  goal (<= {goal} x {peer}'s overhead): {verdict} ({ratio:.2f})")
    split = {
        name: statistics.median(BACKGROUND[f"{framework}/{name}"])
        for name in results
        if f"{framework}/{name}" in BACKGROUND
    }
    shown = ", ".join(f"{name} {value:.1f}" for name, value in split.items())
    print(f"  of which background threads (exporters), µs per request: {shown}")


def print_counts(framework: str, sinks: Sinks, before: dict[str, int], requests: int) -> None:
    """What each variant's sink received against what every request should have produced."""
    parts = []
    for name in VARIANTS[framework][1:]:
        expected = requests * per_request(framework, name)
        sinks.wait(name, before[name] + expected, timeout=5.0)  # the last datagrams may be queued
        parts.append(f"{name} {sinks.counts()[name] - before[name]}/{expected}")
    print(f"  received by the sinks / expected (documents or spans): {', '.join(parts)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round and variant")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--only", choices=tuple(VARIANTS), help="one framework only")
    parser.add_argument("--served", action="store_true", help="real servers and a client process")
    parser.add_argument("--serve", nargs=2, metavar=("FRAMEWORK", "VARIANT"), help="one server")
    parser.add_argument("--port", type=int, default=8000, help="with --serve")
    parser.add_argument("--udp", type=int, default=2000, help="with --serve: X-Ray sink port")
    parser.add_argument("--otlp", type=int, default=4318, help="with --serve: OTLP/HTTP sink port")
    parser.add_argument("--profile", metavar="VARIANT", help="only this Flask variant, in-process (py-spy)")
    parser.add_argument("--sinks", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sinks:
        return serve_sinks(args.sinks)
    if args.client:
        return client_loop()
    if args.serve:
        return serve(*args.serve, args.port, Sink(args.udp, args.otlp))
    if args.profile:
        return profile_alone(args.profile, args.requests * args.rounds)
    import logging

    logging.getLogger("aws_xray_sdk").setLevel(logging.ERROR)
    mode = "served: gunicorn 1 sync worker / uvicorn 1 worker" if args.served else "in-process"
    print(f"python {sys.version.split()[0]}, {_versions()}; {mode}")
    with _harness(args.served) as (sinks, client):
        for framework in [args.only] if args.only else list(VARIANTS):
            before = sinks.counts()
            if client is not None:
                results = run_served(framework, sinks, client, args.requests, args.rounds)
            else:
                results = run_in_process(framework, sinks, args.requests, args.rounds)
            report(framework, results, args.requests, args.rounds)
            print_counts(framework, sinks, before, WARM_UP + args.requests * args.rounds)
        if "fastapi" in (args.only, None):
            print("  (aws-xray-sdk: no ASGI middleware, so not measured for FastAPI)")
        if not args.served:
            _check_emitted()
    return 0


@contextmanager
def _harness(served: bool) -> Iterator[tuple[Sinks, Client | None]]:
    sinks = Sinks(["bare", "tracekit", "aws-xray-sdk", "opentelemetry"])
    client = Client() if served else None
    try:
        yield sinks, client
    finally:
        if client is not None:
            client.close()
        sinks.close()


def _check_emitted() -> None:
    import tracekit

    counts = tracekit.stats()
    dropped = {k: v for k, v in counts.items() if "dropped" in k or k.startswith("errors.")}
    print(f"\ntracekit drops/errors: {dropped or 'none'}")


def _versions() -> str:
    from importlib.metadata import version

    names = ("flask", "fastapi", "gunicorn", "uvicorn", "aws-xray-sdk", "opentelemetry-sdk")
    return ", ".join(f"{name} {version(name)}" for name in names)


# -- the sinks' child process ------------------------------------------------------------------


def serve_sinks(names: list[str]) -> int:
    """One UDP socket (counting datagrams) and one OTLP/HTTP server (counting spans) per name;
    ``counts`` on stdin prints the totals."""
    counts = dict.fromkeys(names, 0)
    ports = {}
    for name in names:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        udp.bind(("127.0.0.1", 0))
        http = ThreadingHTTPServer(("127.0.0.1", 0), _otlp_handler(name, counts))
        threading.Thread(target=http.serve_forever, daemon=True).start()
        threading.Thread(target=_count_datagrams, args=(udp, name, counts), daemon=True).start()
        ports[name] = {"udp": udp.getsockname()[1], "otlp": http.server_address[1]}
    print(json.dumps(ports), flush=True)
    for _line in sys.stdin:
        print(json.dumps(counts), flush=True)
    return 0


def _count_datagrams(udp: socket.socket, name: str, counts: dict[str, int]) -> None:
    """Read what queued every few ms instead of blocking in ``recv``: a sink blocked there is woken
    by every datagram, and on a small machine those wake-ups slow the server being measured (the
    socket buffer holds far more than arrives between reads; a drop would show in the counts)."""
    udp.setblocking(False)
    while True:
        time.sleep(0.005)
        while True:
            try:
                udp.recv(65536)
            except BlockingIOError:
                break
            counts[name] += 1


def _otlp_handler(name: str, counts: dict[str, int]) -> type[BaseHTTPRequestHandler]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest.FromString(body)
            counts[name] += sum(
                len(scope.spans) for res in request.resource_spans for scope in res.scope_spans
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


if __name__ == "__main__":
    sys.exit(main())
