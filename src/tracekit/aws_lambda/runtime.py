"""The Lambda environment: detection, the function's identity, and tracing defaults that fit it.

Lambda decides sampling (``Sampled=`` in each invocation's trace header) and writes the function's
segment itself, so the defaults here are: X-Ray over UDP to ``AWS_XRAY_DAEMON_ADDRESS``, the service
named after the function (the shared settings' last resort), and no centralized-sampling poller
(it would cost cold start for nothing).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tracekit._shared import stats
from tracekit.tracing import config as _config
from tracekit.tracing import provider


def in_lambda(env: Mapping[str, str] | None = None) -> bool:
    """True inside a Lambda execution environment (or an emulation of one)."""
    env = os.environ if env is None else env
    return bool(env.get("AWS_LAMBDA_FUNCTION_NAME") or env.get("AWS_LAMBDA_RUNTIME_API"))


def function_name(env: Mapping[str, str] | None = None, context: Any = None) -> str:
    """The environment's name, else the invocation context's (a handler run by a test or an
    emulator often has only the context), else ``lambda``."""
    env = os.environ if env is None else env
    return env.get("AWS_LAMBDA_FUNCTION_NAME", "") or _context_text(context, "function_name") or "lambda"


def function_version(env: Mapping[str, str] | None = None, context: Any = None) -> str | None:
    env = os.environ if env is None else env
    return env.get("AWS_LAMBDA_FUNCTION_VERSION") or _context_text(context, "function_version")


def function_arn(context: Any) -> str | None:
    """The invoked ARN (with the alias or version the caller named); only the context has it."""
    return _context_text(context, "invoked_function_arn")


def _context_text(context: Any, name: str) -> str | None:
    value = getattr(context, name, None)
    return value if isinstance(value, str) and value else None


def resource_attributes(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """OTel resource attributes describing this function (cloud.*, faas.*)."""
    env = os.environ if env is None else env
    attrs = {"cloud.provider": "aws", "cloud.platform": "aws_lambda"}
    for key, var in (
        ("cloud.region", "AWS_REGION"),
        ("faas.name", "AWS_LAMBDA_FUNCTION_NAME"),
        ("faas.version", "AWS_LAMBDA_FUNCTION_VERSION"),
        ("faas.instance", "AWS_LAMBDA_LOG_STREAM_NAME"),
        ("aws.log.group.names", "AWS_LAMBDA_LOG_GROUP_NAME"),
    ):
        if env.get(var):
            attrs[key] = env[var]
    memory = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory.isdigit():
        attrs["faas.max_memory"] = str(int(memory) * 1024 * 1024)
    return attrs


def is_provisioned(env: Mapping[str, str] | None = None) -> bool:
    """Provisioned concurrency initialises ahead of traffic: its first invocation is not cold."""
    env = os.environ if env is None else env
    return env.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency"


def ensure_configured() -> None:
    """Configure tracing with Lambda defaults unless the application already configured it."""
    if provider.is_configured():
        return
    try:
        defaults = lambda_defaults()
        try:
            provider.configure(**defaults)
        except ImportError as exc:  # e.g. OTLP asked for, but a --slim layer has no exporter
            stats.report("lambda.configure", exc)
            exporters = [name for name in _config.load().exporters if name != "otlp"]
            provider.configure(exporters=exporters or "none", **defaults)
    except Exception as exc:
        stats.report("lambda.configure", exc)


def lambda_defaults(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``configure`` arguments for Lambda; anything set in the environment still wins."""
    env = os.environ if env is None else env
    from_env = _config.load(env)
    defaults: dict[str, Any] = {
        "resource_attributes": {**resource_attributes(env), **from_env.resource_attributes}
    }
    if not env.get("OTEL_TRACES_SAMPLER"):
        from tracekit.tracing.lean import ALWAYS_ON

        # Only reached without a decision from Lambda (local runs, ``Sampled=?``); the SDK's
        # ALWAYS_ON by its methods, which leaves the SDK unimported on the lean path.
        defaults["sampler"] = ALWAYS_ON
    return defaults
