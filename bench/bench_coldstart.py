"""Lambda cold start: tracekit vs Powertools (Tracer + Logger + Metrics) vs OTel SDK + OTLP + the
aws-lambda instrumentation, each loaded from its own layer, and the size of each layer.

Each stack is built as a layer the same way (``tracekit.aws_lambda.layer.package``: manylinux wheels,
no boto3/botocore, bytecode precompiled) and unpacked. Every sample is a fresh ``python -S`` whose
``sys.path`` is what Lambda gives a function: the task directory, the layer's ``python/`` and a
stand-in for /var/runtime (awslambdaric, boto3, botocore and their dependencies, byte-compiled). It
first loads what the runtime loads before the function's module (awslambdaric's bootstrap), then
times import + init of the stack and the handler definition ("init"), then the first invocation
(cold-start work and the flush of X-Ray/OTLP/EMF). Traces go to a local UDP sink (X-Ray) or a local
HTTP sink (OTLP); logs and EMF go to a pipe. Stacks are interleaved within each round; medians count.
Run: .venv-bench/bin/python bench/bench_coldstart.py
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GOAL = 0.25
"""tracekit's import + init + first invocation must be at most this fraction of Powertools'."""
ROOT = Path(__file__).resolve().parent.parent

PRELOAD = "import awslambdaric.bootstrap, http.client, time, json, sys\n"
CONTEXT = """
import types
context = types.SimpleNamespace(
    aws_request_id="6f1c3e5e-0000-4000-8000-000000000001", function_name="bench", function_version="$LATEST",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:bench", memory_limit_in_mb=128,
    get_remaining_time_in_millis=lambda: 30000)
event = {"version": "2.0", "routeKey": "GET /items", "rawPath": "/items",
         "requestContext": {"domainName": "example.com", "http": {"method": "GET", "path": "/items"}}}
"""
TIMED = PRELOAD + CONTEXT + """
t0 = time.perf_counter()
{init}
t1 = time.perf_counter()
{invoke}
t2 = time.perf_counter()
sys.__stdout__.write(json.dumps({"init": (t1 - t0) * 1000, "invoke": (t2 - t1) * 1000}) + "\\n")
"""

TRACEKIT_HANDLER = """
import tracekit, tracekit.metrics
tracekit.metrics.configure(namespace="bench", service="bench")

@tracekit.lambda_handler
def handler(event, context):
    log.info("order received")
    tracekit.metrics.count("Orders", 1)
    return {"statusCode": 200}
"""
TRACEKIT_LOGGERS = {
    # the Lambda logger: tracekit's JSON lines without importing structlog
    "tracekit": 'from tracekit.aws_lambda import get_logger\nlog = get_logger("bench")',
    # tracekit's structlog logger
    "tracekit-structlog": 'import tracekit\nlog = tracekit.get_logger("bench")',
    # stdlib logging records written as tracekit's JSON lines
    "tracekit-stdlib": 'import logging, tracekit.logs\ntracekit.logs.configure()\n'
                       'log = logging.getLogger("bench")',
}
BOTO3_INIT = 'import boto3\nsqs = boto3.client("sqs")\n'
"""A function that uses the AWS SDK makes its clients at init."""
AWS_CALLS_TRACED = "from tracekit.aws_lambda import entry\nentry.trace_aws_calls()\n"
"""What the layer's exec wrapper does once the function's module is loaded: botocore instrumented."""
TRACEKIT_BOTO3 = BOTO3_INIT + TRACEKIT_LOGGERS["tracekit"] + TRACEKIT_HANDLER
STACKS = {
    **{name: (log + TRACEKIT_HANDLER, "handler(event, context)") for name, log in TRACEKIT_LOGGERS.items()},
    "tracekit+boto3": (TRACEKIT_BOTO3, "handler(event, context)"),
    "tracekit+boto3-traced": (TRACEKIT_BOTO3 + AWS_CALLS_TRACED, "handler(event, context)"),
    "powertools": (
        """
from aws_lambda_powertools import Logger, Metrics, Tracer
tracer, logger, metrics = Tracer(), Logger(), Metrics(namespace="bench")

@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event, context):
    logger.info("order received")
    metrics.add_metric(name="Orders", unit="Count", value=1)
    return {"statusCode": 200}
""",
        "handler(event, context)",
    ),
    "otel": (
        """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aws_lambda import AwsLambdaInstrumentor
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
AwsLambdaInstrumentor().instrument()
import bench_otel_handler
""",
        "bench_otel_handler.handler(event, context)",
    ),
    "sdk-floor": (
        """
import opentelemetry.sdk.trace as sdk  # the OpenTelemetry SDK alone: the floor under tracekit
sdk.TracerProvider()
""",
        "pass",
    ),
}
STACK_LAYER = {"tracekit": "tracekit", "tracekit-structlog": "tracekit", "tracekit-stdlib": "tracekit",
               "tracekit+boto3": "tracekit", "tracekit+boto3-traced": "tracekit",
               "powertools": "powertools", "otel": "otel", "sdk-floor": "tracekit"}
OTEL_HANDLER = "def handler(event, context):\n    return {'statusCode': 200}\n"

LAYERS = {
    "tracekit": None,
    "tracekit-slim": None,
    "powertools": ["aws-lambda-powertools[tracer]==3.37.0"],
    "powertools-all": ["aws-lambda-powertools[all]==3.37.0"],
    "otel": ["opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http",
             "opentelemetry-instrumentation-aws-lambda"],
}


class _Sink(BaseHTTPRequestHandler):
    """Accepts OTLP exports, so the OTel stack's flush does real, successful work."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


RUNTIME = ("awslambdaric", "runtime_client", "simplejson", "snapshot_restore_py", "boto3", "botocore",
           "s3transfer", "jmespath", "dateutil", "python_dateutil", "six", "urllib3")
"""What the Lambda Python runtime has in /var/runtime: the runtime client and the AWS SDK."""


def _environment(udp_port: int, http_port: int, task: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEKIT_", "AWS_", "PYTHON"))}
    env.update(
        AWS_LAMBDA_FUNCTION_NAME="bench",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",  # Lambda sets both; botocore reads this one
        LAMBDA_TASK_ROOT=str(task),
        _HANDLER="bench_otel_handler.handler",
        _X_AMZN_TRACE_ID="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{udp_port}",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:{http_port}/v1/traces",
        POWERTOOLS_SERVICE_NAME="bench",
    )
    return env


def _sample(stack: str, env: dict[str, str], path: str) -> dict[str, float]:
    init, invoke = STACKS[stack]
    code = TIMED.replace("{init}", init).replace("{invoke}", invoke)
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], env={**env, "PYTHONPATH": path},
        capture_output=True, text=True, check=False, timeout=60,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"init"')]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{stack} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(lines[-1])
    return result


def _var_runtime(root: Path) -> Path:
    """Symlinks to the runtime's own packages (and their metadata), byte-compiled in place."""
    site = Path(sysconfig.get_paths()["purelib"])
    runtime = root / "var-runtime"
    runtime.mkdir()
    for entry in site.iterdir():
        base = entry.name.split("-")[0].split(".")[0].lower()
        if base in RUNTIME:
            (runtime / entry.name).symlink_to(entry)
            if entry.is_dir():
                compileall.compile_dir(entry, quiet=2, workers=0)
    return runtime


def _layers(root: Path) -> tuple[dict[str, Path], dict[str, tuple[int, int]]]:
    """Build and unpack each stack's layer; returns their python/ dirs and (zip, unzipped) sizes."""
    from tracekit.aws_lambda import layer

    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    dirs, sizes = {}, {}
    for name, requirements in LAYERS.items():
        out = root / f"{name}.zip"
        if requirements is None:
            built = layer.build(py, "x86_64", out, slim=name.endswith("slim"))
        else:
            built = layer.package(requirements, py, "x86_64", out)
        sizes[name] = (built.zip_bytes, built.unzipped_bytes)
        with zipfile.ZipFile(out) as archive:
            archive.extractall(root / name)
        dirs[name] = root / name / "python"
    return dirs, sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in STACKS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        task = root / "task"
        task.mkdir()
        (task / "bench_otel_handler.py").write_text(OTEL_HANDLER)
        layers, sizes = _layers(root)
        runtime = _var_runtime(root)
        env = _environment(udp.getsockname()[1], sink.server_address[1], task)
        order = list(STACKS)
        for i in range(args.rounds):
            for stack in order[i % len(order):] + order[: i % len(order)]:  # rotate who goes first
                layer_dir = layers[STACK_LAYER[stack]]
                samples[stack].append(_sample(stack, env, f"{task}:{layer_dir}:{runtime}"))
    sink.shutdown()
    _report(samples, args.rounds)
    _report_layers(sizes)
    return 0


def _median(values: list[dict[str, float]], key: str) -> float:
    return statistics.median(v[key] if key != "total" else v["init"] + v["invoke"] for v in values)


def _report(samples: dict[str, list[dict[str, float]]], rounds: int) -> None:
    print(f"Lambda cold start, {rounds} interleaved rounds of fresh interpreters "
          f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs); median ms")
    print(f"{'stack':<23}{'import+init':>13}{'1st invoke':>12}{'total':>9}{'init min':>10}{'init max':>10}")
    for name, values in samples.items():
        inits = [v["init"] for v in values]
        print(f"{name:<23}{_median(values, 'init'):>13.1f}{_median(values, 'invoke'):>12.1f}"
              f"{_median(values, 'total'):>9.1f}{min(inits):>10.1f}{max(inits):>10.1f}")
    base = samples["powertools"]
    for key, label in (("init", "import+init"), ("total", "init + 1st invoke")):
        ratios = "   ".join(
            f"{name}/powertools = {_median(samples[name], key) / _median(base, key):.3f}"
            for name in samples if name != "powertools"
        )
        print(f"ratio {label:<18} {ratios}")
    traced = _median(samples["tracekit+boto3-traced"], "init") - _median(samples["tracekit+boto3"], "init")
    print(f"AWS SDK calls traced by the exec wrapper (botocore instrumentation) add {traced:.1f} ms "
          "to the import+init of a function that uses boto3")
    for name in ("tracekit", "tracekit-structlog", "tracekit-stdlib"):
        verdict = _median(samples[name], "total") / _median(base, "total") <= GOAL
        verdict_text = "met" if verdict else "NOT met"
        print(f"goal: {name} import+init+1st invoke <= {GOAL} x Powertools: {verdict_text}")


def _report_layers(sizes: dict[str, tuple[int, int]]) -> None:
    print(f"{'layer (python/, no boto3/botocore, bytecode precompiled)':<67}zip MB   unzipped MB")
    for name, (zipped, unzipped) in sizes.items():
        what = {"tracekit": "tracekit layer build",
                "tracekit-slim": "tracekit layer build --slim (no OTLP/Prometheus)",
                "powertools": "aws-lambda-powertools[tracer]",
                "powertools-all": "aws-lambda-powertools[all]",
                "otel": "OTel SDK + OTLP/HTTP + aws-lambda instr."}[name]
        print(f"  {name:<15}{what:<50}{zipped / 1e6:>7.2f}{unzipped / 1e6:>13.2f}")


if __name__ == "__main__":
    sys.exit(main())
