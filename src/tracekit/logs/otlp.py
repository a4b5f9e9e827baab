"""OTLP export of tracekit's log records: the settings (the pipeline is :mod:`tracekit.logs.otlp_export`).

Off by default (JSON lines on stdout are the default output); on with ``configure(otlp=True)``,
``TRACEKIT_LOGS_EXPORTERS=stdout,otlp`` (``otlp`` alone: no stdout lines) or ``OTEL_LOGS_EXPORTER=otlp``
(adds OTLP to the stdout lines). The SDK's logs pipeline and the exporter are imported only then.
Each record keeps the trace and span ids it was written under, so a log and its span share ids in
CloudWatch and in X-Ray. CloudWatch Logs' endpoint (``https://logs.<region>.amazonaws.com/v1/logs``)
wants the ``x-aws-log-group`` / ``x-aws-log-stream`` headers and SigV4 (service ``logs``), which the
shared session adds (:mod:`tracekit._shared.otlp_http`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

from tracekit._shared import settings
from tracekit._shared.settings import ConfigError

EXPORTERS = ("stdout", "otlp")
DEFAULT_ENDPOINT = "http://localhost:4318/v1/logs"
LOG_GROUP_HEADERS = ("x-aws-log-group", "x-aws-log-stream")
MAX_REQUEST_BYTES = 1_048_576
"""CloudWatch Logs' OTLP endpoint takes request bodies up to 1 MiB, uncompressed (what ADOT's
logs exporter keeps under too)."""
MIN_REQUEST_BYTES = 4096


def parse_exporters(name: str, value: str | Sequence[str]) -> tuple[str, ...]:
    """``"stdout,otlp"`` -> ``("stdout", "otlp")`` (``console`` is accepted for ``stdout``)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(
        "stdout" if i.strip().lower() == "console" else i.strip().lower() for i in items if i.strip()
    ))
    if not names or any(n not in EXPORTERS for n in names):
        raise ConfigError(name, value, "a comma list of stdout, otlp")
    return names


def exporters_from(env: Mapping[str, str], exporters: str | Sequence[str] | None,
                   otlp: bool | None) -> tuple[str, ...]:
    """The outputs: the argument, else ``TRACEKIT_LOGS_EXPORTERS``, else stdout (plus OTLP when
    ``OTEL_LOGS_EXPORTER`` names it); ``otlp=True/False`` adds or removes OTLP."""
    if exporters is not None:
        names = parse_exporters("exporters", exporters)
    elif env.get("TRACEKIT_LOGS_EXPORTERS", "").strip():
        names = parse_exporters("TRACEKIT_LOGS_EXPORTERS", env["TRACEKIT_LOGS_EXPORTERS"])
    else:
        otel = {i.strip().lower() for i in env.get("OTEL_LOGS_EXPORTER", "").split(",")}
        names = ("stdout", "otlp") if "otlp" in otel else ("stdout",)
    if otlp is True and "otlp" not in names:
        names = (*names, "otlp")
    elif otlp is False:
        names = tuple(n for n in names if n != "otlp") or ("stdout",)
    return names


class Target(NamedTuple):
    """Where OTLP log records go and how the requests are signed (a NamedTuple: this module is
    loaded on every Lambda cold start, where a dataclass costs ~0.5 ms to build)."""

    endpoint: str = DEFAULT_ENDPOINT
    headers: Mapping[str, str] = MappingProxyType({})
    sigv4: str = "auto"
    region: str | None = None
    max_request_bytes: int = MAX_REQUEST_BYTES
    """Largest request body, before compression (``TRACEKIT_OTLP_LOGS_MAX_REQUEST_BYTES``)."""


def target_from(env: Mapping[str, str]) -> Target:
    """``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` (else ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/logs``), the
    matching ``*_HEADERS``, ``TRACEKIT_OTLP_LOGS_SIGV4`` / ``TRACEKIT_OTLP_SIGV4``, the region and
    ``TRACEKIT_OTLP_LOGS_MAX_REQUEST_BYTES``; a CloudWatch Logs target without its log group and
    stream headers is a ``ConfigError``."""
    from tracekit._shared.otlp_http import sigv4_service
    from tracekit.tracing.config import sigv4_mode

    env = settings.environ(env)
    endpoint = DEFAULT_ENDPOINT
    if "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" in env:
        endpoint = settings.checked(
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"], settings.http_url
        )
    elif "OTEL_EXPORTER_OTLP_ENDPOINT" in env:
        base = settings.checked("OTEL_EXPORTER_OTLP_ENDPOINT", env["OTEL_EXPORTER_OTLP_ENDPOINT"],
                                settings.http_url)
        endpoint = base.rstrip("/") + "/v1/logs"
    headers_var = next(
        (v for v in ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") if v in env), None
    )
    headers = settings.pairs(headers_var, env[headers_var]) if headers_var else {}
    target = Target(endpoint, headers, sigv4_mode(env, "logs"), settings.region(env=env), _max_request(env))
    lowered = {k.lower() for k in headers}
    if sigv4_service(endpoint, target.sigv4, "logs") == "logs" and not lowered >= set(LOG_GROUP_HEADERS):
        raise ConfigError(
            headers_var or "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            settings.masked_pairs(env.get(headers_var or "", "")),
            "x-aws-log-group=<group>,x-aws-log-stream=<stream> (CloudWatch Logs' OTLP endpoint needs both, "
            "naming an existing group and stream)",
        )
    return target


def _max_request(env: Mapping[str, str]) -> int:
    """``TRACEKIT_OTLP_LOGS_MAX_REQUEST_BYTES``, at least :data:`MIN_REQUEST_BYTES` (a request also
    carries the resource and the scope)."""
    name = "TRACEKIT_OTLP_LOGS_MAX_REQUEST_BYTES"
    if name not in env:
        return MAX_REQUEST_BYTES
    value = settings.checked(name, env[name], settings.positive(int))
    if value < MIN_REQUEST_BYTES:
        raise ConfigError(name, env[name], f"a number of bytes >= {MIN_REQUEST_BYTES}")
    return value
