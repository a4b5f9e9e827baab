"""examples/ecs/ and the Dockerfile agree with the sidecar's defaults and with the clients' parsers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tracekit.metrics.sinks import parse_endpoint
from tracekit.sidecar.settings import OPTIONS, Settings
from tracekit.tracing import config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ecs"
DEFAULTS = Settings()


def load(name: str) -> Any:
    return json.loads((EXAMPLE / name).read_text())


def container(name: str) -> dict[str, Any]:
    task = load("task-definition.json")
    return next(c for c in task["containerDefinitions"] if c["name"] == name)


def env(definition: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in definition.get("environment", [])}


def default_ports() -> set[tuple[int, str]]:
    """Every port the sidecar listens on by default, as (port, protocol)."""
    assert DEFAULTS.otlp_address is not None and DEFAULTS.emf_address is not None
    return {
        (DEFAULTS.udp_address[1], "udp"),
        (DEFAULTS.tcp_address[1], "tcp"),
        (DEFAULTS.admin_address[1], "tcp"),
        (DEFAULTS.otlp_address[1], "tcp"),
        (DEFAULTS.emf_address[1], "tcp"),
        (DEFAULTS.emf_address[1], "udp"),
    }


def test_sidecar_port_mappings_are_the_default_ports() -> None:
    mappings = {(m["containerPort"], m["protocol"]) for m in container("tracekit")["portMappings"]}
    assert mappings == default_ports()


def test_dockerfile_exposes_the_default_ports_and_checks_the_default_admin_port() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    exposed = re.search(r"^EXPOSE (.+)$", dockerfile, re.M)
    assert exposed is not None
    ports = {(int(p.split("/")[0]), p.split("/")[1]) for p in exposed.group(1).split()}
    assert ports == default_ports()
    admin = f"{DEFAULTS.admin_address[0]}:{DEFAULTS.admin_address[1]}"
    assert f"'TRACEKIT_SIDECAR_ADMIN_ADDRESS', '{admin}'" in dockerfile
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)


def test_app_environment_points_the_clients_at_the_sidecar() -> None:
    """Parsed by the same code the clients run: tracekit's config and its EMF agent sink."""
    app = env(container("app"))
    loaded = config.load(app)
    assert loaded.daemon_udp == DEFAULTS.udp_address
    assert loaded.daemon_tcp == DEFAULTS.tcp_address
    assert DEFAULTS.otlp_address is not None
    otlp = urlsplit(loaded.otlp_endpoint or "")
    assert (otlp.hostname, otlp.port, otlp.path) == (*DEFAULTS.otlp_address, "/v1/traces")
    assert loaded.otlp_protocol == "http/protobuf"  # the sidecar speaks OTLP/HTTP, not gRPC
    assert parse_endpoint(app["AWS_EMF_AGENT_ENDPOINT"]) == ("tcp", DEFAULTS.emf_address)


def test_sidecar_environment_uses_known_settings_with_valid_values() -> None:
    options = {opt.env: opt for opt in OPTIONS}
    sidecar_env = env(container("tracekit"))
    assert sidecar_env
    for name, value in sidecar_env.items():
        assert name in options, f"{name} is not a sidecar setting"
        options[name].parse(value)
    timeout = float(sidecar_env.get("TRACEKIT_SIDECAR_SHUTDOWN_TIMEOUT", DEFAULTS.shutdown_timeout))
    assert timeout < container("tracekit")["stopTimeout"]


def test_health_check_and_startup_order() -> None:
    sidecar, app = container("tracekit"), container("app")
    command = sidecar["healthCheck"]["command"]
    assert command[0] == "CMD"
    admin = f"http://{DEFAULTS.admin_address[0]}:{DEFAULTS.admin_address[1]}/health"
    assert admin in command[-1]
    assert sidecar["healthCheck"]["startPeriod"] >= 10
    assert app["dependsOn"] == [{"containerName": "tracekit", "condition": "HEALTHY"}]
    for definition in (sidecar, app):
        assert definition["logConfiguration"]["logDriver"] == "awslogs"
        assert definition["essential"] is True


def statements() -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in load("iam-policy.json")["Statement"]}


def actions(statement: dict[str, Any]) -> set[str]:
    found = statement["Action"]
    return {found} if isinstance(found, str) else set(found)


XRAY_ACTIONS = {
    "/TraceSegments": "xray:PutTraceSegments", "/TelemetryRecords": "xray:PutTelemetryRecords",
    "/GetSamplingRules": "xray:GetSamplingRules", "/SamplingTargets": "xray:GetSamplingTargets",
    "/SamplingStatisticSummaries": "xray:GetSamplingStatisticSummaries",
}  # fmt: skip
"""The IAM action behind each X-Ray API path."""


def test_policy_grants_exactly_what_the_sidecar_calls() -> None:
    """The X-Ray part follows the paths the code calls: a new proxied path fails here first."""
    from tracekit.sidecar import proxy, telemetry
    from tracekit.xray import sender

    called = {sender.PATH, telemetry.PATH, *proxy.SAMPLING_PATHS}
    granted = set().union(*(actions(s) for s in statements().values()))
    assert granted == {XRAY_ACTIONS[path] for path in called} | {
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",  # tracekit.logs.cwlogs
        "cloudwatch:PutMetricData",  # the application's own metrics (the policy is the task's)
    }  # fmt: skip
    assert all(s["Effect"] == "Allow" and "*" not in actions(s) for s in statements().values())


def test_logs_permissions_are_limited_to_the_emf_log_group() -> None:
    group = env(container("tracekit"))["TRACEKIT_SIDECAR_EMF_LOG_GROUP"]
    resources = statements()["EmfLogGroup"]["Resource"]
    assert resources and all(f":log-group:{group}" in arn for arn in resources)
    assert any(arn.endswith(f":log-group:{group}:log-stream:*") for arn in resources)


@pytest.mark.parametrize("key", ["Resource", "Condition"])
def test_put_metric_data_is_limited_to_the_app_namespace(key: str) -> None:
    statement = statements()["MetricsInOwnNamespace"]
    namespace = env(container("app"))["AWS_EMF_NAMESPACE"]
    if key == "Condition":
        assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": namespace}}
    else:
        assert statement["Resource"] == "*"  # PutMetricData has no resource-level permissions
