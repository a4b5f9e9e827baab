"""What the specs generate: dashboard bodies valid for CloudWatch, burn-rate alarms, and only
metrics that tracekit really emits (checked against the real recorder, Lambda decorator, web
middleware and sidecar, not against the constants the generator uses)."""

from __future__ import annotations

import copy
import json
import re
import socket
import sys
import time
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboards_helpers import EXAMPLES_DIR, ROOT, SPEC_DIR, TOPIC

import tracekit
from support.dashboard_schema import body_errors
from tracekit._shared import stats as _stats
from tracekit.dashboards import DEFAULT_PREFIX, build, spec

Reference = tuple[str, str, frozenset[tuple[str, str]]]
"""(namespace, metric name, dimensions) as a widget row or an alarm names a metric."""


def generate(*paths: Path) -> build.Desired:
    specs, problems = spec.check(paths, {"alarm_topic": TOPIC})
    desired, more = build.desired(specs, DEFAULT_PREFIX, "eu-west-1")
    assert not problems + more
    return desired


def references(desired: build.Desired) -> Iterator[Reference]:
    """Every metric the dashboards chart and the alarms watch."""
    for body in desired.dashboards.values():
        for widget in body["widgets"]:
            for row in widget["properties"].get("metrics", []):
                if isinstance(row[0], str):
                    names = [v for v in row if isinstance(v, str)]
                    yield names[0], names[1], frozenset(zip(names[2::2], names[3::2], strict=True))
    for alarm in desired.alarms.values():
        metrics = [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
        for metric in metrics or [alarm]:
            dims = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
            yield metric["Namespace"], metric["MetricName"], dims


def not_emitted(refs: Iterator[Reference], namespace: str, emitted: set[Reference]) -> list[Reference]:
    return sorted(r for r in refs if r[0] == namespace and r not in emitted)


# -- dashboard bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", [SPEC_DIR, EXAMPLES_DIR], ids=["observability", "examples"])
def test_every_generated_body_follows_the_dashboard_body_structure(folder: Path) -> None:
    desired = generate(folder)
    assert desired.dashboards
    for name, body in desired.dashboards.items():
        assert body_errors(body) == [], name
        assert body_errors(json.loads(json.dumps(body))) == [], name  # as PutDashboard gets it


def test_the_schema_rejects_what_cloudwatch_would() -> None:
    body = generate(SPEC_DIR).dashboards["tracekit-order-service"]
    cases = {
        "widgets/1/width": lambda b: b["widgets"][1].update(width=30),
        "widgets/1/properties": lambda b: b["widgets"][1]["properties"].update(titel="typo"),
        "widgets/1: '100*errors/nothing' uses ids": lambda b: b["widgets"][1]["properties"][
            "metrics"][3][0].update(expression="100*errors/nothing"),
        "widgets/2: dimension names": lambda b: b["widgets"][2]["properties"]["metrics"][0].insert(2, "X"),
        "widgets/0: extends": lambda b: b["widgets"][0].update(x=12),
    }
    for expected, mutate in cases.items():
        broken = copy.deepcopy(body)
        mutate(broken)
        errors = body_errors(broken)
        assert any(e.startswith(expected) for e in errors), (expected, errors)


def test_widgets_cover_routes_lambda_ecs_sidecar_step_functions_and_logs() -> None:
    bodies = {**generate(SPEC_DIR).dashboards, **generate(EXAMPLES_DIR).dashboards}
    titles = [w["properties"].get("title", "") for b in bodies.values() for w in b["widgets"]]
    for expected in ("GET /orders/{order_id}: requests, 4xx and 5xx rate (%)",
                     "GET /orders/{order_id}: latency (ms)",
                     "Lambda shop-orders: invocations, errors, throttles",
                     "Lambda shop-orders: duration p99 (ms)", "Lambda shop-orders: cold starts",
                     "Lambda shop-orders: concurrent executions", "ECS order-service: CPU units",
                     "ECS order-service: memory (MB)", "Sidecar: segments received, sent, dropped",
                     "Sidecar health: /health is 503 above the line",
                     "Step Functions: failed and throttled executions",
                     "Errors with their X-Ray trace id"):
        assert expected in titles
    logs = next(w for w in bodies["tracekit-order-service"]["widgets"] if w["type"] == "log")
    assert logs["properties"]["query"].startswith("SOURCE '/ecs/order-service' | fields @timestamp, "
                                                  "message, xray_trace_id")
    latency = next(w for w in bodies["tracekit-order-service"]["widgets"]
                   if w["properties"].get("title") == "GET /orders/{order_id}: latency (ms)")
    assert [row[-1]["stat"] for row in latency["properties"]["metrics"]] == ["p50", "p90", "p99"]


# -- alarms ------------------------------------------------------------------------------------------


def test_burn_rate_thresholds_follow_the_30_day_budget() -> None:
    assert [(t.name, t.long, t.short, t.burn) for t in build.BURN_TIERS] == [
        ("fast", 3600, 300, 14.4), ("slow", 21600, 1800, 6.0)]


def test_an_availability_objective_becomes_two_burn_rate_alarms_on_both_windows() -> None:
    alarms = generate(SPEC_DIR).alarms
    fast = alarms["tracekit-order-service SLO availability fast burn GET /orders/{order_id}"]
    slow = alarms["tracekit-order-service SLO availability slow burn GET /orders/{order_id}"]
    assert (fast["Threshold"], slow["Threshold"]) == (14.4, 6.0)
    assert fast["ComparisonOperator"] == "GreaterThanThreshold" and fast["AlarmActions"] == [TOPIC]
    queries = {q["Id"]: q for q in fast["Metrics"]}
    assert {i: q["MetricStat"]["Period"] for i, q in queries.items() if "MetricStat" in q} == {
        "requests_long": 3600, "errors_long": 3600, "requests_short": 300, "errors_short": 300}
    assert queries["errors_long"]["MetricStat"]["Metric"]["MetricName"] == "ServerErrors"
    assert queries["burn_long"]["Expression"] == "errors_long/requests_long/0.001"
    assert queries["burn"] == {"Id": "burn", "Expression": "MIN([burn_long, burn_short])",
                               "Label": "burn rate (both windows)", "ReturnData": True}
    assert [q["Id"] for q in fast["Metrics"] if q["ReturnData"]] == ["burn"]
    assert {q["MetricStat"]["Period"] for q in slow["Metrics"] if "MetricStat" in q} == {21600, 1800}


def test_burn_rate_expressions_fire_only_when_both_windows_burn() -> None:
    """Evaluate the generated expressions with CloudWatch's semantics for one data point."""
    alarm = generate(SPEC_DIR).alarms[
        "tracekit-order-service SLO availability fast burn GET /orders/{order_id}"]

    def burn(requests_long: float, errors_long: float, requests_short: float, errors_short: float) -> float:
        values = dict(requests_long=requests_long, errors_long=errors_long,
                      requests_short=requests_short, errors_short=errors_short)
        for query in alarm["Metrics"]:
            if "Expression" in query:
                python = query["Expression"].replace("MIN([", "min([")
                values[query["Id"]] = eval(python, {"min": min}, dict(values))
        return float(values["burn"])

    over = alarm["Threshold"]
    assert burn(10_000, 150, 1000, 15) > over  # 1.5% errors in both windows: 15x the budget
    assert burn(10_000, 150, 1000, 0) < over  # recovered: the short window is clean
    assert burn(10_000, 10, 1000, 900) < over  # a blip: the long window is still within budget


def test_a_latency_objective_uses_the_percentile_rank_of_the_threshold() -> None:
    alarms = generate(SPEC_DIR).alarms
    fast = alarms["tracekit-order-service SLO latency fast burn GET /orders/{order_id}"]
    stats = [q["MetricStat"] for q in fast["Metrics"] if "MetricStat" in q]
    assert [(s["Metric"]["MetricName"], s["Stat"], s["Period"]) for s in stats] == [
        ("Latency", "PR(:300)", 3600), ("Latency", "PR(:300)", 300)]
    assert {q["Id"]: q.get("Expression") for q in fast["Metrics"]}["burn_long"] == "(100-fast_long)/100/0.01"


def test_the_asked_for_alarms_exist_with_their_periods() -> None:
    alarms = {**generate(SPEC_DIR).alarms, **generate(EXAMPLES_DIR).alarms}
    error_rate = alarms["tracekit-order-service 5xx rate GET /orders/{order_id}"]
    limits = ("Threshold", "EvaluationPeriods", "DatapointsToAlarm")
    assert [error_rate[k] for k in limits] == [2, 5, 5]
    assert [q.get("Expression") for q in error_rate["Metrics"]][-1] == "100*errors/requests"
    p99 = alarms["tracekit-order-service p99 latency POST /orders"]
    assert (p99["ExtendedStatistic"], p99["Threshold"]) == ("p99", 2000.0)
    assert "tracekit-order-service 5xx rate GET /health" not in alarms  # turned off in the spec
    watched = {(a.get("Namespace"), a.get("MetricName")) for a in alarms.values()}
    assert {("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("AWS/States", "ExecutionsFailed"),
            ("AWS/States", "ExecutionThrottled"),
            ("ECS/ContainerInsights/Prometheus", "tracekit_sidecar_upstream_dropped_total")} <= watched


# -- one source of truth: what tracekit emits --------------------------------------------------------


def emf_references(path: Path) -> set[Reference]:
    """(namespace, metric, dimensions) of every metric in an EMF file."""
    found = set()
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dims in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"],
                               frozenset((d, doc[d]) for d in dims)))
    return found


@pytest.fixture
def emf_file(tmp_path: Path) -> Iterator[Path]:
    from tracekit import metrics

    out = tmp_path / "emf.jsonl"
    yield out
    metrics.shutdown()


def test_red_metrics_charted_and_alarmed_are_the_ones_the_recorder_emits(emf_file: Path) -> None:
    from tracekit import metrics

    desired = generate(SPEC_DIR)
    metrics.configure(outputs=[f"file:{emf_file}"], service="order-service", flush_interval=0, env={})
    for route, method in (("/orders/{order_id}", "GET"), ("/orders", "POST"), ("/health", "GET")):
        metrics.record_request(route, method, 200, 12.0)
    metrics.flush(5)
    emitted = emf_references(emf_file)
    assert not_emitted(references(desired), "tracekit", emitted) == []
    assert sum(1 for r in references(desired) if r[0] == "tracekit") > 20

    # and the check fails when a widget names a metric tracekit never emits
    renamed = copy.deepcopy(desired)
    row = renamed.dashboards["tracekit-order-service"]["widgets"][1]["properties"]["metrics"][0]
    row[1] = "Requests"
    assert [r[1] for r in not_emitted(references(renamed), "tracekit", emitted)] == ["Requests"]


def test_lambda_widgets_match_what_the_decorator_emits(
    emf_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracekit import metrics
    from tracekit.aws_lambda import handler
    from tracekit.tracing import provider

    for name in ("OTEL_SERVICE_NAME", "AWS_EMF_NAMESPACE", "POWERTOOLS_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "shop-orders")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    handler._reset_cold_start()
    metrics.configure(outputs=[f"file:{emf_file}"])

    @tracekit.lambda_handler
    def handle(event: Any, context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": "{}"}

    context = types.SimpleNamespace(aws_request_id="r-1", memory_limit_in_mb=128,
                                    invoked_function_arn="arn:aws:lambda:us-east-1:1:function:shop-orders",
                                    get_remaining_time_in_millis=lambda: 30_000)
    event = {"resource": "/orders/{id}", "path": "/orders/7", "httpMethod": "GET",
             "requestContext": {"resourcePath": "/orders/{id}", "httpMethod": "GET", "stage": "prod"},
             "headers": {}, "pathParameters": {"id": "7"}}
    try:
        handle(event, context)
    finally:
        provider.shutdown()
    emitted = emf_references(emf_file)
    desired = generate(EXAMPLES_DIR / "shop-lambda.yaml")
    assert {r[1] for r in emitted} >= {"ColdStart", "RequestCount", "Latency"}
    assert not_emitted(references(desired), "tracekit", emitted) == []


def _example_service(source: str) -> str:
    return re.findall(r'tracekit\.configure\(service="([^"]+)"', source)[0]


def test_the_flask_and_fastapi_example_specs_chart_what_the_examples_emit(emf_file: Path) -> None:
    import asyncio

    import httpx

    from tracekit import metrics

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import fastapi_app
        import flask_app
        from _support import start_inventory
    finally:
        sys.path.remove(str(ROOT / "examples"))
    for module, spec_file in ((flask_app, "shop-flask.yaml"), (fastapi_app, "shop-fastapi.yaml")):
        source = Path(module.__file__ or "").read_text()
        desired = generate(EXAMPLES_DIR / spec_file)
        service = _example_service(source)
        assert f"tracekit-{service}" in desired.dashboards
        tracekit.configure(service=service, exporters="none")
        metrics.configure(outputs=[f"file:{emf_file}"], service=service, flush_interval=0, env={})
        if module is flask_app:
            flask_app.app.config["INVENTORY_URL"] = start_inventory()
            flask_app.app.test_client().get("/orders/42").close()
        else:
            fastapi_app.app.state.inventory_url = start_inventory()

            async def call() -> int:
                transport = httpx.ASGITransport(app=fastapi_app.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    return (await client.get("/orders/42")).status_code

            assert asyncio.run(call()) == 200
        metrics.shutdown()
        tracekit.shutdown()
        emitted = emf_references(emf_file)
        assert not_emitted(references(desired), "tracekit", emitted) == [], spec_file
        emf_file.unlink()


def test_sidecar_widgets_and_alarm_name_what_its_metrics_endpoint_exposes(moto: str) -> None:
    from tracekit.sidecar.runtime import Sidecar
    from tracekit.sidecar.settings import Settings
    from tracekit.xray.protocol import HEADER

    _stats.reset()  # counts of other tests' sidecars
    free = ("127.0.0.1", 0)
    sidecar = Sidecar(Settings(udp_address=free, tcp_address=free, admin_address=free,
                               region="us-east-1", endpoint_url=moto, batch_timeout=0.05,
                               telemetry_interval=60.0, shutdown_timeout=5.0))
    sidecar.start()
    try:
        now = time.time()
        segment = {"trace_id": f"1-{int(now):08x}-bd862e3fe1be46a994272793", "id": "53995c3f42cd8ad8",
                   "name": "order-service", "start_time": now, "end_time": now + 0.1}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(HEADER + b"\n" + json.dumps(segment).encode(), sidecar.udp.address())
        host, port = sidecar.admin.address()[:2]
        deadline = time.monotonic() + 10
        text = ""
        sent = "tracekit_sidecar_upstream_sent_total 1.0"
        while not (sent in text and build.SIDECAR_UPSTREAM_AGE in text) and time.monotonic() < deadline:
            time.sleep(0.05)
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
    finally:
        sidecar.shutdown()
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    desired = generate(SPEC_DIR)
    charted = {r[1] for r in references(desired) if r[0] == spec.PROMETHEUS_NAMESPACE}
    assert charted == {"tracekit_sidecar_udp_received_total", "tracekit_sidecar_upstream_sent_total",
                       "tracekit_sidecar_upstream_dropped_total",
                       "tracekit_sidecar_upstream_last_success_age_seconds",
                       "tracekit_sidecar_queued_documents"}
    assert charted <= exposed, charted - exposed
    assert sent in text
