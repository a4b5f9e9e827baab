"""What a Lambda cold start loads: nothing the invocation does not use (bench/bench_coldstart.py).

A fresh interpreter runs the benchmark's function (Lambda logger, one EMF metric, the decorated
handler, an HTTP API event) and reports which modules its import, init and first invocation loaded.
Then it imports what an OpenTelemetry instrumentation would and checks that the process-wide
settings tracekit made are there all the same: the X-Ray and W3C propagators on
``opentelemetry.propagate`` and the submitter's context in ``ThreadPoolExecutor`` work.
"""

from __future__ import annotations

import json
import subprocess
import sys

from support.udp_receiver import UdpReceiver

TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
NEVER_LOADED = (
    "boto3", "botocore", "opentelemetry.sdk", "opentelemetry.exporter", "google.protobuf", "structlog",
    "asyncio", "tracekit.sampling", "tracekit.tracing.instrument", "tracekit.logs.otlp_export",
    "tracekit._shared.batching",  # metrics go to stdout, X-Ray documents over UDP
    "importlib.metadata",  # no entry-point scan: the default context and propagators need none
    # set up only when something imports them (tracekit._shared.post_import): ~2 ms
    "opentelemetry.propagate", "opentelemetry.baggage", "concurrent.futures",
    # no dataclass is built on the cold path: ~0.5 ms each
    "dataclasses",
    # a few documents per invocation: stdlib json, not orjson's ~2 ms import; no ctypes for sendmmsg
    "orjson", "ctypes", "tracekit._shared.mmsg",
    # urllib.parse loads ipaddress: ~2 ms, for percent-decoding and URL splitting nothing here needs
    "urllib.parse",
)

FUNCTION = '''
import json, sys, types
before = set(sys.modules)
import tracekit, tracekit.metrics
from tracekit.aws_lambda import get_logger
log = get_logger("app")
tracekit.metrics.configure(namespace="app", service="app")

@tracekit.lambda_handler
def handler(event, context):
    log.info("order received")
    tracekit.metrics.count("Orders", 1)
    return {"statusCode": 200}

context = types.SimpleNamespace(aws_request_id="r1", function_name="fn", function_version="$LATEST",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:fn", memory_limit_in_mb=128,
    get_remaining_time_in_millis=lambda: 30000)
handler({"version": "2.0", "routeKey": "GET /items", "rawPath": "/items",
         "requestContext": {"domainName": "example.com", "http": {"method": "GET", "path": "/items"}}},
        context)
loaded = sorted(set(sys.modules) - before)

from concurrent.futures import ThreadPoolExecutor
from opentelemetry import propagate, trace
with tracekit.span("outbound") as span:
    carrier = {}
    propagate.inject(carrier)
    with ThreadPoolExecutor(1) as pool:
        in_pool = pool.submit(lambda: trace.get_current_span().get_span_context().span_id).result()
sys.stdout.flush()
ids = span.get_span_context()
print(json.dumps({"loaded": loaded, "carrier": carrier, "trace_id": f"{ids.trace_id:032x}",
                  "span_id": ids.span_id, "in_pool": in_pool}))
'''


def test_the_cold_path_loads_only_what_the_invocation_uses_and_keeps_the_otel_globals() -> None:
    with UdpReceiver() as daemon:
        env = {"AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_REGION": "us-east-1",
               "AWS_XRAY_DAEMON_ADDRESS": daemon.address,
               "_X_AMZN_TRACE_ID": TRACE_HEADER}
        done = subprocess.run([sys.executable, "-c", FUNCTION], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        documents = daemon.wait_for(2)
    report = json.loads(done.stdout.splitlines()[-1])
    unexpected = [m for m in report["loaded"] if m.startswith(NEVER_LOADED)]
    assert unexpected == [], f"the Lambda cold path loaded {unexpected}"
    assert "tracekit.aws_lambda.handler" in report["loaded"]  # the list is the cold path's
    assert any(doc.get("parent_id") == "53995c3f42cd8ad8" for doc in documents)

    trace_id, span_id = report["trace_id"], f"{report['span_id']:016x}"
    carrier = report["carrier"]
    assert carrier["X-Amzn-Trace-Id"] == f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_id};Sampled=1"
    assert carrier["traceparent"] == f"00-{trace_id}-{span_id}-01"
    assert report["in_pool"] == report["span_id"]


def test_post_import_hooks() -> None:
    """A hook runs at once on an imported module, else right after the import; a failing hook is
    counted and the import succeeds; the module keeps its own loader; the finder goes away."""
    code = '''
import sys, importlib.machinery
from tracekit._shared import post_import, stats
seen = []
post_import.when_imported("sys", lambda m: seen.append(("now", m.__name__)))
post_import.when_imported("colorsys", lambda m: seen.append(("later", m.hls_to_rgb(0, 0, 0))))
post_import.when_imported("colorsys", lambda m: 1 / 0)
assert "colorsys" not in sys.modules and seen == [("now", "sys")]
import colorsys
assert seen == [("now", "sys"), ("later", (0.0, 0.0, 0.0))], seen
assert isinstance(colorsys.__loader__, importlib.machinery.SourceFileLoader)
assert colorsys.__spec__.loader is colorsys.__loader__
assert not any(type(f).__module__ == "tracekit._shared.post_import" for f in sys.meta_path)
assert stats.stats()["errors.post_import"] == 1, stats.stats()
print("ok")
'''
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "ok"
