"""OTLP export of tracekit's log records, through the OpenTelemetry SDK's logs pipeline.

Off by default (JSON lines on stdout are the default output); on with ``configure(otlp=True)``,
``TRACEKIT_LOGS_EXPORTERS=stdout,otlp`` (``otlp`` alone: no stdout lines) or ``OTEL_LOGS_EXPORTER=otlp``
(adds OTLP to the stdout lines). The SDK's logs pipeline and the exporter are imported only then.
Each record keeps the trace and span ids it was written under, so a log and its span share ids in
CloudWatch and in X-Ray. CloudWatch Logs' endpoint (``https://logs.<region>.amazonaws.com/v1/logs``)
wants the ``x-aws-log-group`` / ``x-aws-log-stream`` headers and SigV4 (service ``logs``), which the
shared session adds (:mod:`tracekit._shared.otlp_http`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tracekit._shared import settings, stats
from tracekit._shared.settings import ConfigError

EXPORTERS = ("stdout", "otlp")
DEFAULT_ENDPOINT = "http://localhost:4318/v1/logs"
LOG_GROUP_HEADERS = ("x-aws-log-group", "x-aws-log-stream")
NOT_EXPORTED = ("opentelemetry", "urllib3", "requests", "botocore")
"""Loggers (and their children) whose records stay off OTLP, like tracekit's self-telemetry logger
``tracekit`` (``tracekit.request`` is exported): the exporter's own lines would feed back into the
pipeline they report on."""
_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
_NOT_ATTRIBUTES = frozenset(("timestamp", "level", "message", "trace_id", "span_id", "exception"))


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


@dataclass(frozen=True)
class Target:
    """Where OTLP log records go and how the requests are signed."""

    endpoint: str = DEFAULT_ENDPOINT
    headers: Mapping[str, str] = field(default_factory=dict)
    sigv4: str = "auto"
    region: str | None = None


def target_from(env: Mapping[str, str]) -> Target:
    """``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` (else ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/logs``), the
    matching ``*_HEADERS``, ``TRACEKIT_OTLP_LOGS_SIGV4`` / ``TRACEKIT_OTLP_SIGV4`` and the region;
    a CloudWatch Logs target without its log group and stream headers is a ``ConfigError``."""
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
    target = Target(endpoint, headers, sigv4_mode(env, "logs"), settings.region(env=env))
    lowered = {k.lower() for k in headers}
    if sigv4_service(endpoint, target.sigv4, "logs") == "logs" and not lowered >= set(LOG_GROUP_HEADERS):
        raise ConfigError(
            headers_var or "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            settings.masked_pairs(env.get(headers_var or "", "")),
            "x-aws-log-group=<group>,x-aws-log-stream=<stream> (CloudWatch Logs' OTLP endpoint needs both, "
            "naming an existing group and stream)",
        )
    return target


class Pipeline:
    """A LoggerProvider with a batch processor and the OTLP/HTTP log exporter (bounded queue)."""

    def __init__(self, target: Target, service: str, *, credentials: Any = None) -> None:
        from opentelemetry.exporter.otlp.proto.http import _log_exporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource

        from tracekit._shared import otlp_http

        session = otlp_http.session(
            target.endpoint, target.sigv4, default_service="logs", region=target.region,
            name="logs.otlp", credentials=credentials,
        )
        otlp_http.quiet_exporter_logs(_log_exporter.__name__)
        exporter = _log_exporter.OTLPLogExporter(
            endpoint=target.endpoint, headers=dict(target.headers), timeout=5, session=session
        )
        self.provider = LoggerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_log_record_processor(
            BatchLogRecordProcessor(_CountingExporter(exporter), max_queue_size=2048, max_export_batch_size=256)
        )
        self._logger = self.provider.get_logger("tracekit.logs", settings.VERSION)

    def emit(self, record: Mapping[str, Any]) -> None:
        """Hand one rendered record to the pipeline (never blocks: the processor's queue is bounded)."""
        logger = str(record.get("logger", ""))
        if logger == "tracekit" or any(logger == n or logger.startswith(n + ".") for n in NOT_EXPORTED):
            return
        from opentelemetry._logs import LogRecord

        level = str(record.get("level", "info"))
        self._logger.emit(LogRecord(
            timestamp=_nanos(str(record.get("timestamp", ""))),
            observed_timestamp=time.time_ns(),
            context=_span_context(record.get("trace_id"), record.get("span_id")),
            severity_text=level.upper(),
            severity_number=_severity(level),
            body=str(record.get("message", "")),
            attributes=_attributes(record),
        ))

    def flush(self, timeout: float) -> bool:
        return bool(self.provider.force_flush(int(timeout * 1000)))

    def shutdown(self) -> None:
        self.provider.shutdown()


class _CountingExporter:
    """Counts records exported and failed (``logs.otlp.records_*``), like the span exporter."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        try:
            result = self._inner.export(batch)
        except Exception as exc:
            stats.report("logs.otlp.export", exc)
            result = LogRecordExportResult.FAILURE
        ok = getattr(result, "name", None) == "SUCCESS"  # the SDK has had two such enums
        stats.incr("logs.otlp.records_exported" if ok else "logs.otlp.records_failed", len(batch))
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self._inner.shutdown()


def _severity(level: str) -> Any:
    from opentelemetry._logs import SeverityNumber

    return SeverityNumber(_SEVERITY.get(level, 9))


def _nanos(iso: str) -> int:
    """``2026-11-25T15:40:01.123Z`` -> ns since the epoch (the record's own time: buffered debug
    lines are exported later than they were written)."""
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) * 1_000_000
    except ValueError:
        return time.time_ns()


def _span_context(trace_id: Any, span_id: Any) -> Any:
    """An OTel context holding the record's span, so the SDK puts its ids on the log record."""
    if not (isinstance(trace_id, str) and isinstance(span_id, str)):
        return None
    from opentelemetry import trace

    current = trace.get_current_span().get_span_context()
    ids = (int(trace_id, 16), int(span_id, 16))
    flags = current.trace_flags if (current.trace_id, current.span_id) == ids else trace.TraceFlags(0)
    span = trace.NonRecordingSpan(trace.SpanContext(*ids, is_remote=False, trace_flags=flags))
    return trace.set_span_in_context(span)


def _attributes(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields as OTLP attributes: scalars as they are, the rest as JSON text, the
    exception under OpenTelemetry's ``exception.*`` names."""
    result: dict[str, Any] = {}
    for key, value in record.items():
        if key in _NOT_ATTRIBUTES or value is None:
            continue
        is_scalar = isinstance(value, (str, bool, int, float))
        result[key] = value if is_scalar else json.dumps(value, default=str, ensure_ascii=False)
    exception = record.get("exception")
    if isinstance(exception, Mapping):
        result["exception.type"] = str(exception.get("type", ""))
        result["exception.message"] = str(exception.get("message", ""))
        result["exception.stacktrace"] = str(exception.get("stack", ""))
    return result
