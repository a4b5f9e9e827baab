"""The OTLP logs pipeline: OpenTelemetry's LoggerProvider, batch processor and OTLP/HTTP exporter.

Imported only when ``tracekit.logs`` exports over OTLP (:mod:`tracekit.logs.otlp` has the settings):
the SDK's logs pipeline and protobuf cost cold start. Records are handed over already rendered
(redacted, with their correlation fields); the span they were written in becomes the OTel context,
so the SDK puts its trace and span ids on the exported record.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http import _log_exporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from tracekit._shared import otlp_http, settings, stats
from tracekit.logs.otlp import Target

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord

NOT_EXPORTED = ("opentelemetry", "urllib3", "requests", "botocore")
"""Loggers (and their children) whose records stay off OTLP, like tracekit's self-telemetry logger
``tracekit`` (``tracekit.request`` is exported): the exporter's own lines would feed back into the
pipeline they report on."""
_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
_NOT_ATTRIBUTES = frozenset(("timestamp", "level", "message", "trace_id", "span_id", "exception"))


class Pipeline:
    """A LoggerProvider with a batch processor and the OTLP/HTTP log exporter.

    At most ``max_queue`` records wait for export; more are dropped and counted here
    (``logs.otlp.dropped.queue_full``) before the SDK's queue overflows, which it only logs, per record.
    """

    def __init__(self, target: Target, service: str, max_queue: int = 2048) -> None:
        self._max_queue = max_queue
        self._pending = 0
        self._lock = threading.Lock()
        session = otlp_http.session(
            target.endpoint, target.sigv4, default_service="logs", region=target.region, name="logs.otlp"
        )
        otlp_http.quiet_exporter_logs(_log_exporter.__name__)
        exporter = _log_exporter.OTLPLogExporter(
            endpoint=target.endpoint, headers=dict(target.headers), timeout=5, session=session
        )
        self.provider = LoggerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_log_record_processor(
            BatchLogRecordProcessor(_CountingExporter(exporter, self._done),
                                    max_queue_size=max(max_queue, 256), max_export_batch_size=256)
        )
        self._logger = self.provider.get_logger("tracekit.logs", settings.VERSION)

    def emit(self, record: Mapping[str, Any]) -> None:
        """Hand one rendered record to the pipeline (never blocks: the processor's queue is bounded)."""
        logger = str(record.get("logger", ""))
        if logger == "tracekit" or any(logger == n or logger.startswith(n + ".") for n in NOT_EXPORTED):
            return
        with self._lock:
            full = self._pending >= self._max_queue
            self._pending += not full
        if full:
            stats.incr("logs.otlp.dropped.queue_full")
            return
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

    def _done(self, count: int) -> None:
        with self._lock:
            self._pending = max(0, self._pending - count)

    def shutdown(self) -> None:
        self.provider.shutdown()


class _CountingExporter(LogRecordExporter):
    """Counts records exported and failed (``logs.otlp.records_*``), like the span exporter."""

    def __init__(self, inner: LogRecordExporter, done: Callable[[int], None]) -> None:
        self._inner, self._done = inner, done

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        try:
            result = self._inner.export(batch)
        except Exception as exc:
            stats.report("logs.otlp.export", exc)
            result = LogRecordExportResult.FAILURE
        ok = result == LogRecordExportResult.SUCCESS
        stats.incr("logs.otlp.records_exported" if ok else "logs.otlp.records_failed", len(batch))
        self._done(len(batch))
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]


def _severity(level: str) -> SeverityNumber:
    return SeverityNumber(_SEVERITY.get(level, 9))


def _nanos(iso: str) -> int:
    """``2026-11-25T15:40:01.123Z`` -> ns since the epoch (the record's own time: buffered debug
    lines are exported later than they were written)."""
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000) * 1_000_000
    except ValueError:
        return time.time_ns()


def _span_context(trace_id: Any, span_id: Any) -> Context | None:
    """An OTel context holding the record's span, so the SDK puts its ids on the log record."""
    if not (isinstance(trace_id, str) and isinstance(span_id, str)):
        return None
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
