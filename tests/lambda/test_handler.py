"""``@tracekit.lambda_handler`` in process: async handlers, failures, defaults, flushing, logs, metrics."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import threading
import time
import traceback
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import tracekit
from support.udp_receiver import UdpReceiver
from tracekit._shared import stats as _stats
from tracekit.aws_lambda import entry, events, handler, layer, runtime
from tracekit.tracing import otlp as _otlp
from tracekit.tracing import provider

ROOT, PARENT = "1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8"


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, daemon: UdpReceiver) -> Iterator[UdpReceiver]:
    """A Lambda-like environment whose daemon is the UDP receiver; tracing unconfigured."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "TRACEKIT_", "AWS_LAMBDA_", "AWS_EMF", "POWERTOOLS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", daemon.address)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT};Parent={PARENT};Sampled=1")
    provider.shutdown()
    handler._reset_cold_start()
    _stats.reset()
    yield daemon
    provider.shutdown()


def _context(request_id: str = "req-1", remaining_ms: int = 30_000) -> Any:
    return types.SimpleNamespace(
        aws_request_id=request_id,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:orders",
        memory_limit_in_mb=256,
        get_remaining_time_in_millis=lambda: remaining_ms,
    )


def test_async_handler_runs_on_one_loop_kept_across_invocations(lambda_env: UdpReceiver) -> None:
    loops = []

    @tracekit.lambda_handler
    async def handle(event: Any, context: Any) -> dict[str, Any]:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        with tracekit.span("inner"):
            pass
        return {"n": event["n"]}

    assert handle({"n": 1}, _context()) == {"n": 1}
    assert handle({"n": 2}, _context("req-2")) == {"n": 2}
    assert loops[0] is loops[1]
    first, second = lambda_env.wait_for(2)
    assert [s["name"] for s in first["subsegments"]] == ["inner"]
    assert first["annotations"] == {"ColdStart": True} and second["annotations"] == {"ColdStart": False}
    assert first["aws"]["request_id"] == "req-1" and second["aws"]["request_id"] == "req-2"


def test_exceptions_are_recorded_and_reraised_unchanged(lambda_env: UdpReceiver) -> None:
    class OrderRejected(Exception):
        pass

    raised = OrderRejected("no stock")

    @tracekit.lambda_handler
    def handle(event: Any, context: Any) -> None:
        raise raised

    with pytest.raises(OrderRejected) as caught:
        handle({}, _context())
    assert caught.value is raised
    assert traceback.extract_tb(caught.value.__traceback__)[-1].name == "handle"
    doc = lambda_env.wait_for(1)[0]
    assert doc["fault"] is True and doc["cause"]["exceptions"][0]["type"].endswith("OrderRejected")


def test_http_status_codes_map_to_error_and_fault(lambda_env: UdpReceiver) -> None:
    event = {"httpMethod": "GET", "path": "/x", "headers": {"Host": "h"}, "requestContext": {}}
    v2 = {"version": "2.0", "requestContext": {"domainName": "h", "http": {"method": "GET", "path": "/"}}}
    v1_of_http_api = {**event, "version": "1.0"}
    results = iter([{"statusCode": 404}, {"statusCode": "503"}, "plain body", "plain body", "plain body"])

    @tracekit.lambda_handler
    def handle(event: Any, context: Any) -> Any:
        return next(results)

    for each in (event, event, event, v2, v1_of_http_api):
        handle(each, _context())
    not_found, unavailable, rest_plain, v2_plain, v1_plain = lambda_env.wait_for(5)
    assert not_found["error"] is True and "fault" not in not_found
    assert unavailable["fault"] is True and unavailable["http"]["response"]["status"] == 503
    assert "response" not in rest_plain["http"] and "error" not in rest_plain
    assert v2_plain["http"]["response"]["status"] == 200 and "error" not in v2_plain
    assert "response" not in v1_plain["http"]  # format 1.0 has no implicit 200


def test_a_5xx_response_is_an_error_status_for_otlp_too(lambda_env: UdpReceiver) -> None:
    """X-Ray reads the status code; OTLP backends read the span status (ERROR only for 5xx)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    finished = InMemorySpanExporter()
    provider.configure(span_processors=[SimpleSpanProcessor(finished)], **runtime.lambda_defaults())
    v2 = {"version": "2.0", "requestContext": {"domainName": "h", "http": {"method": "GET", "path": "/"}}}
    results = iter([{"statusCode": 503}, {"statusCode": 404}])
    handle = tracekit.lambda_handler(lambda event, context: next(results))
    handle(v2, _context())
    handle(v2, _context())
    statuses = [span.status.status_code for span in finished.get_finished_spans()]
    assert statuses == [StatusCode.ERROR, StatusCode.UNSET]


def test_sampled_zero_records_nothing_but_runs_the_handler(lambda_env: UdpReceiver) -> None:
    os.environ["_X_AMZN_TRACE_ID"] = f"Root={ROOT};Parent={PARENT};Sampled=0"
    handle = tracekit.lambda_handler(lambda event, context: "done")
    assert handle({}, _context()) == "done"
    os.environ["_X_AMZN_TRACE_ID"] = f"Root=1-5759e988-00000000000000000000000a;Parent={PARENT};Sampled=1"
    handle({}, _context())
    assert [d["trace_id"] for d in lambda_env.wait_for(1)] == ["1-5759e988-00000000000000000000000a"]


def test_without_a_trace_header_the_span_is_a_segment(lambda_env: UdpReceiver) -> None:
    del os.environ["_X_AMZN_TRACE_ID"]
    tracekit.lambda_handler(lambda event, context: None)({}, _context())
    doc = lambda_env.wait_for(1)[0]
    assert "parent_id" not in doc and "type" not in doc and doc["name"] == "orders"


def test_tracekit_failures_never_reach_the_handler(
    lambda_env: UdpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    handle = tracekit.lambda_handler(lambda event, context: {"ok": event})
    monkeypatch.setattr(events, "recognise", broken)
    monkeypatch.setattr(provider, "force_flush", broken)
    assert handle(1, _context()) == {"ok": 1}
    monkeypatch.setattr(handler.api, "span", broken)
    assert handle(2, _context()) == {"ok": 2}
    counts = _stats.stats()
    assert counts["errors.lambda.event_source"] == 2
    assert counts["errors.lambda.finish"] == 2
    assert counts["errors.lambda.begin"] == 1


def test_defaults_fit_lambda_and_a_users_configuration_is_kept(lambda_env: UdpReceiver) -> None:
    tracekit.lambda_handler(lambda event, context: None)
    assert provider.current_config().service == "orders"
    attrs = provider.current_config().resource_attributes
    assert attrs["cloud.platform"] == "aws_lambda" and attrs["faas.version"] == "7"
    provider.shutdown()
    tracekit.configure(service="mine")
    tracekit.lambda_handler(lambda event, context: None)
    assert provider.current_config().service == "mine"


def test_outside_lambda_nothing_is_configured_at_decoration(
    lambda_env: UdpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    handle = tracekit.lambda_handler(lambda event, context: "ran")
    assert not provider.is_configured()
    assert handle({}, _context()) == "ran"


def test_without_the_otlp_exporter_xray_still_works(
    lambda_env: UdpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --slim layer has no OTLP exporter: configuring OTLP there loses OTLP, not X-Ray."""

    def missing(cfg: Any) -> Any:
        raise ImportError("No module named 'opentelemetry.exporter'")

    monkeypatch.setenv("TRACEKIT_EXPORTERS", "xray,otlp")
    monkeypatch.setattr(_otlp, "_otlp_exporter", missing)
    tracekit.lambda_handler(lambda event, context: None)({}, _context())
    assert lambda_env.wait_for(1)[0]["parent_id"] == PARENT
    assert provider.current_config().exporters == ("xray",)
    assert _stats.stats()["errors.lambda.configure"] == 1


def test_environment_wins_over_lambda_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AWS_LAMBDA_FUNCTION_NAME": "orders", "OTEL_SERVICE_NAME": "checkout",
           "OTEL_RESOURCE_ATTRIBUTES": "cloud.platform=custom", "OTEL_TRACES_SAMPLER": "always_off"}
    defaults = runtime.lambda_defaults(env)
    assert "service" not in defaults and "sampler" not in defaults
    assert defaults["resource_attributes"]["cloud.platform"] == "custom"
    assert runtime.in_lambda(env) and not runtime.in_lambda({})


def test_provisioned_concurrency_is_not_a_cold_start(
    lambda_env: UdpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")
    tracekit.lambda_handler(lambda event, context: None)({}, _context())
    assert lambda_env.wait_for(1)[0]["annotations"] == {"ColdStart": False}


def test_decorator_options_and_idempotence(lambda_env: UdpReceiver) -> None:
    @tracekit.lambda_handler(name="checkout")
    def handle(event: Any, context: Any) -> int:
        return 1

    assert tracekit.aws_lambda.instrument(handle) is handle
    assert handle.__name__ == "handle"
    handle({}, _context())
    assert lambda_env.wait_for(1)[0]["name"] == "checkout"


def test_flush_stops_before_the_deadline() -> None:
    assert handler._flush_budget(_context(remaining_ms=30_000), 2.0) == 2.0
    assert handler._flush_budget(_context(remaining_ms=500), 2.0) == pytest.approx(0.3)
    assert handler._flush_budget(_context(remaining_ms=50), 2.0) == 0.0
    assert handler._flush_budget(object(), 1.5) == 1.5


class _HeldCollector(BaseHTTPRequestHandler):
    """An OTLP endpoint that answers only once ``server.release`` is set."""

    server: Any

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.release.wait(10)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def held_collector() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HeldCollector)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_otlp_flush_waits_a_bounded_time(
    held_collector: Any, lambda_env: UdpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OTLP collector that does not answer must not hold the invocation."""
    monkeypatch.setenv("TRACEKIT_EXPORTERS", "otlp")
    url = f"http://127.0.0.1:{held_collector.server_address[1]}/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)
    monkeypatch.setenv("TRACEKIT_LAMBDA_FLUSH_TIMEOUT", "0.3")
    handle = tracekit.lambda_handler(lambda event, context: "ok")
    start = time.monotonic()
    assert handle({}, _context()) == "ok"
    assert time.monotonic() - start < 2.0
    assert _stats.stats()["lambda.flush_timeouts"] == 1
    held_collector.release.set()  # the pending export now succeeds, so shutdown is quick


def test_a_bad_flush_timeout_is_reported_and_the_default_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEKIT_LAMBDA_FLUSH_TIMEOUT", "soon")
    _stats.reset()
    assert handler._flush_timeout() == handler.DEFAULT_FLUSH_TIMEOUT
    assert _stats.stats()["errors.lambda.flush_timeout"] == 1


def test_logs_carry_the_request_id_and_cold_start(lambda_env: UdpReceiver) -> None:
    from tracekit import logs

    stream = io.StringIO()
    logs.configure(stream=stream, stdlib=False)
    log = logs.get_logger("orders")

    @tracekit.lambda_handler
    def handle(event: Any, context: Any) -> None:
        log.info("placing order")

    try:
        handle({}, _context("req-1"))
        handle({}, _context("req-2"))
    finally:
        logs.configure(stdlib=False)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    placed = [line for line in lines if line["message"] == "placing order"]
    assert [(p["function_request_id"], p["cold_start"]) for p in placed] == [
        ("req-1", True),
        ("req-2", False),
    ]
    assert placed[0]["function_name"] == "orders" and placed[0]["xray_trace_id"] == ROOT


def test_function_identity_comes_from_the_context_when_the_environment_lacks_it(
    lambda_env: UdpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler run by a test or a local emulator: the context object is all there is."""
    from tracekit import logs

    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_VERSION")
    context = _context("req-1")
    context.function_name, context.function_version = "orders-fn", "12"
    stream = io.StringIO()
    logs.configure(stream=stream, stdlib=False)

    @tracekit.lambda_handler
    def handle(event: Any, context: Any) -> None:
        logs.get_logger("orders").info("placing order")

    try:
        handle({}, context)
    finally:
        logs.configure(stdlib=False)
    tracekit.force_flush()
    attributes = lambda_env.wait_for(1)[0]["metadata"]["default"]
    assert attributes["faas.name"] == "orders-fn" and attributes["faas.version"] == "12"
    assert attributes["cloud.resource_id"] == context.invoked_function_arn
    [line] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["function_name"] == "orders-fn"
    assert line["function_arn"] == context.invoked_function_arn


def test_metrics_flush_every_invocation_and_count_a_failed_cold_start(
    lambda_env: UdpReceiver, tmp_path: Path
) -> None:
    from tracekit import metrics

    out = tmp_path / "emf.jsonl"
    metrics.configure(namespace="orders", outputs=[f"file:{out}"])

    @tracekit.lambda_handler
    def handle(event: Any, context: Any) -> None:
        metrics.count("Placed", 1)
        if event:
            raise ValueError("fails")

    def emitted() -> list[dict[str, Any]]:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    try:
        with pytest.raises(ValueError):
            handle({"fail": True}, _context())
        after_first = emitted()
        handle({}, _context("req-2"))
        after_second = emitted()
    finally:
        metrics.shutdown()
    assert sum("ColdStart" in doc for doc in after_first) == 1
    assert sum("Placed" in doc for doc in after_first) == 1
    assert sum("ColdStart" in doc for doc in after_second) == 1
    assert sum("Placed" in doc for doc in after_second) == 2


def test_metrics_recorded_at_init_leave_with_the_first_invocation(
    lambda_env: UdpReceiver, tmp_path: Path
) -> None:
    """Outside an invocation's scope (module level, at init) metrics wait in the root scope: the
    end-of-invocation flush sends them before Lambda freezes the process."""
    from tracekit import metrics

    out = tmp_path / "emf.jsonl"
    metrics.configure(namespace="orders", outputs=[f"file:{out}"])
    try:
        metrics.count("ConfigLoaded", 1)
        tracekit.lambda_handler(lambda event, context: None)({}, _context())
        emitted = out.read_text() if out.exists() else ""
    finally:
        metrics.shutdown()
    assert '"ConfigLoaded":1' in emitted


def test_entry_point_loads_and_restores_the_original_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_HANDLER", entry.ENTRY_POINT)
    assert entry.load_original("json.dumps") is json.dumps
    assert os.environ["_HANDLER"] == "json.dumps"


@pytest.mark.parametrize(("spec", "kind", "message"), [
    ("", "MalformedHandlerName", "Bad handler '' in TRACEKIT_ORIGINAL_HANDLER: expected module.function"),
    (entry.ENTRY_POINT, "MalformedHandlerName", f"Bad handler '{entry.ENTRY_POINT}'"),
    ("json.nothing", "HandlerNotFound", "Handler 'nothing' missing on module 'json'"),
    ("no_such_module_here.handler", "ImportModuleError",
     "Unable to import module 'no_such_module_here': No module named 'no_such_module_here'"),
])
def test_entry_point_failures_are_named_as_the_runtime_names_them(spec: str, kind: str, message: str) -> None:
    with pytest.raises(entry.InitFault) as caught:
        entry.load_original(spec)
    assert type(caught.value).__name__ == f"Runtime.{kind}"
    assert str(caught.value).startswith(message)


def test_wrapper_script_swaps_the_handler_in_env_and_arguments(tmp_path: Path) -> None:
    script = tmp_path / "tracekit-instrument"
    script.write_text(layer.WRAPPER_SCRIPT)
    show = 'printf "%s|" "$_HANDLER" "$TRACEKIT_ORIGINAL_HANDLER" "$@"'
    env = {"PATH": os.environ["PATH"], "_HANDLER": "app.handler"}
    out = subprocess.run(["sh", str(script), "sh", "-c", show, "x", "app.handler", "a b"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out == f"{entry.ENTRY_POINT}|app.handler|{entry.ENTRY_POINT}|a b|"
    untouched = subprocess.run(["sh", str(script), "sh", "-c", show, "x", "y"],
                               env={"PATH": os.environ["PATH"]}, capture_output=True, text=True).stdout
    assert untouched == "||y|"


def test_http_invocations_record_red_metrics_per_route(lambda_env: UdpReceiver, tmp_path: Path) -> None:
    from tracekit import metrics

    out = tmp_path / "emf.jsonl"
    metrics.configure(namespace="orders", outputs=[f"file:{out}"])
    event = {"version": "2.0", "routeKey": "GET /orders/{id}", "rawPath": "/orders/7",
             "requestContext": {"domainName": "h", "http": {"method": "GET", "path": "/orders/7"}}}
    statuses = iter([200, 404, 503])

    @tracekit.lambda_handler
    def handle(event: Any, context: Any) -> Any:
        status = next(statuses, None)
        if status is None:
            raise RuntimeError("crash")
        return {"statusCode": status}

    try:
        for n in range(3):
            handle(event, _context(f"req-{n}"))
        with pytest.raises(RuntimeError):
            handle(event, _context("req-3"))
    finally:
        metrics.shutdown()
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    red = [d for d in docs if "RequestCount" in d and d.get("Route") == "/orders/{id}"]
    assert red and all(d["Method"] == "GET" for d in red)
    total = {name: sum(_values(d[name]) for d in red)
             for name in ("RequestCount", "ClientErrors", "ServerErrors")}
    assert total == {"RequestCount": 4, "ClientErrors": 1, "ServerErrors": 2}


def _values(value: Any) -> float:
    return float(sum(value)) if isinstance(value, list) else float(value)
