"""The OTLP logs pipeline: OpenTelemetry's LoggerProvider and OTLP/HTTP exporter, batched by
tracekit's :class:`~tracekit._shared.batching.BatchQueue`.

Imported only when ``tracekit.logs`` exports over OTLP (:mod:`tracekit.logs.otlp` has the settings):
the SDK's logs pipeline and protobuf cost cold start. Records are handed over already rendered
(redacted, with their correlation fields); the span they were written in becomes the OTel context,
so the SDK puts its trace and span ids on the exported record.

The SDK's batch processor cuts batches by count only, and CloudWatch Logs refuses requests over
1 MB; here batches are cut by count and by bytes, so that no request body exceeds
``Target.max_request_bytes``. A record's size is an upper bound of its protobuf encoding, summed from
its strings' lengths (:func:`record_bound`): cheap on the caller's thread, and a batch of bounds
under the limit is a request under the limit.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http import _log_exporter
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

from tracekit._shared import otlp_http, settings, stats
from tracekit._shared.batching import BatchQueue
from tracekit.logs.otlp import Target

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadWriteLogRecord
    from opentelemetry.util.types import AnyValue

NOT_EXPORTED = ("opentelemetry", "urllib3", "requests", "botocore")
"""Loggers (and their children) whose records stay off OTLP, like tracekit's self-telemetry logger
``tracekit`` (``tracekit.request`` is exported): the exporter's own lines would feed back into the
pipeline they report on."""
SCOPE = "tracekit.logs"
_SEVERITY = {"debug": 5, "info": 9, "warning": 13, "error": 17, "critical": 21}
_NOT_ATTRIBUTES = frozenset(("timestamp", "level", "message", "trace_id", "span_id", "exception"))


MAX_BATCH = 256
MAX_WAIT = 1.0
"""Seconds a partial batch waits for company (the SDK batch processor's default delay)."""
MAX_BUFFER_BYTES = 16 * 1024 * 1024
"""Bytes of records that may wait for export, whatever their count."""
SHUTDOWN_TIMEOUT = 5.0


class Pipeline:
    """A LoggerProvider whose records are batched by a :class:`BatchQueue` into the OTLP/HTTP exporter.

    At most ``max_queue`` records (and ``MAX_BUFFER_BYTES``) wait for export; more are dropped and
    counted (``logs.otlp.dropped.buffer_full``).
    """

    def __init__(self, target: Target, service: str, max_queue: int = 2048) -> None:
        session = otlp_http.session(
            target.endpoint, target.sigv4, default_service="logs", region=target.region, name="logs.otlp"
        )
        otlp_http.quiet_exporter_logs(_log_exporter.__name__)
        exporter = _log_exporter.OTLPLogExporter(
            endpoint=target.endpoint, headers=dict(target.headers), timeout=5, session=session
        )
        resource = Resource.create({"service.name": service})
        self.provider = LoggerProvider(resource=resource)
        self.provider.add_log_record_processor(QueuedProcessor(
            _CountingExporter(exporter), target.max_request_bytes, max_queue,
            envelope=envelope_bound(resource, SCOPE, settings.VERSION),
        ))  # fmt: skip
        self._logger = self.provider.get_logger(SCOPE, settings.VERSION)

    def emit(self, record: Mapping[str, Any]) -> None:
        """Hand one rendered record to the pipeline (never blocks: the queue is bounded)."""
        logger = str(record.get("logger", ""))
        if logger == "tracekit" or any(logger == n or logger.startswith(n + ".") for n in NOT_EXPORTED):
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

    def shutdown(self) -> None:
        self.provider.shutdown()


class QueuedProcessor(LogRecordProcessor):
    """The SDK's batch processor, replaced: records wait in a :class:`BatchQueue` whose batches stay
    under ``max_request_bytes`` once encoded.

    A record that would not fit in a request alone has its body cut to fit (``logs.otlp.truncated``);
    one that does not fit even without a body is dropped (``logs.otlp.dropped.too_large``). Both are
    logged at most once a minute.
    """

    def __init__(
        self, exporter: LogRecordExporter, max_request_bytes: int, max_queue: int, *, envelope: int
    ) -> None:
        """``envelope``: the request's bytes around its records (:func:`envelope_bound`)."""
        self._exporter = exporter
        self._max_request = max_request_bytes
        self._room = max_request_bytes - envelope
        self._queue: BatchQueue[tuple[ReadableLogRecord, int]] = BatchQueue(
            self._export, name="logs.otlp", max_batch=MAX_BATCH, max_items=max_queue,
            max_bytes=MAX_BUFFER_BYTES, max_batch_bytes=self._room, size=_second, max_wait=MAX_WAIT,
        )  # fmt: skip

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = copy.copy(log_record.log_record)
        record.context = Context()  # not needed once the ids are set; would hold the span
        size = record_bound(record)
        if size > self._room and not self._shorten(record, size - self._room):
            return
        readable = ReadableLogRecord(
            log_record=record, resource=log_record.resource or Resource.create({}),
            instrumentation_scope=log_record.instrumentation_scope, limits=log_record.limits,
        )  # fmt: skip
        self._queue.submit((readable, record_bound(record)))

    def _shorten(self, record: LogRecord, excess: int) -> bool:
        """Cut ``excess`` bytes from the body, or count the record as dropped; False when dropped."""
        body = record.body
        data = body.encode("utf-8") if isinstance(body, str) else b""
        if len(data) < excess:
            self._queue.count_dropped("too_large")
            stats.warn_once_per_interval(
                "logs.otlp.dropped.too_large", "tracekit: logs.otlp: a record over the %d-byte request "
                "limit even without its body was dropped (logs.otlp.dropped.too_large)", self._max_request,
            )  # fmt: skip
            return False
        record.body = data[: len(data) - excess].decode("utf-8", errors="ignore")
        stats.incr("logs.otlp.truncated")
        stats.warn_once_per_interval(
            "logs.otlp.truncated", "tracekit: logs.otlp: a %d-byte message was cut to fit the %d-byte "
            "request limit (logs.otlp.truncated)", len(data), self._max_request,
        )  # fmt: skip
        return True

    def _export(self, batch: list[tuple[ReadableLogRecord, int]]) -> None:
        self._exporter.export([record for record, _ in batch])

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._queue.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        self._queue.close(SHUTDOWN_TIMEOUT)
        self._exporter.shutdown()  # type: ignore[no-untyped-call]


class _CountingExporter(LogRecordExporter):
    """Counts records exported and failed (``logs.otlp.records_*``), like the span exporter."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self._inner = inner

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        try:
            result = self._inner.export(batch)
        except Exception as exc:
            stats.report("logs.otlp.export", exc)
            result = LogRecordExportResult.FAILURE
        ok = result == LogRecordExportResult.SUCCESS
        stats.incr("logs.otlp.records_exported" if ok else "logs.otlp.records_failed", len(batch))
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]


# -- encoded sizes: upper bounds of the OTLP protobuf encoding ------------------------------------

FIELD = 6
"""A length-delimited field's tag (1 byte) and length (at most 5 bytes)."""
RECORD_FIXED = 96
"""A log record's fixed-size fields with their tags: two timestamps (9 each), severity number (11),
flags (5), trace id (18), span id (10), dropped attributes count (6), and the record's own framing."""


def record_bound(record: LogRecord) -> int:
    """At most how many bytes the log record adds to a request (its body, attributes, texts)."""
    texts = (record.severity_text, getattr(record, "event_name", None))
    size = RECORD_FIXED + sum(FIELD + _utf8(t) for t in texts if t) + FIELD + value_bound(record.body)
    return size + attributes_bound(record.attributes)


def envelope_bound(resource: Resource, *scope: str) -> int:
    """At most how many bytes a request spends around its records: the request's, the resource
    logs' and the scope logs' framing, the resource and the scope (name, version)."""
    texts = (resource.schema_url, *scope)
    return 8 * FIELD + sum(FIELD + _utf8(t) for t in texts if t) + attributes_bound(resource.attributes)


def attributes_bound(attributes: Mapping[str, Any] | None) -> int:
    """Each key-value pair: its framing, the key's, and the value's."""
    return sum(2 * FIELD + _utf8(k) + value_bound(v) for k, v in (attributes or {}).items())


def value_bound(value: AnyValue) -> int:
    """An ``AnyValue``: its framing plus the string, bytes, number or nested values it holds."""
    if value is None:
        return FIELD
    if isinstance(value, str):
        return 2 * FIELD + _utf8(value)
    if isinstance(value, bytes):
        return 2 * FIELD + len(value)
    if isinstance(value, Mapping):
        return 2 * FIELD + attributes_bound(value)
    if isinstance(value, Sequence):
        return 2 * FIELD + sum(FIELD + value_bound(v) for v in value)
    return FIELD + 11  # bool, int (a varint of at most 10 bytes) or double (8)


def _utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _second(item: tuple[Any, int]) -> int:
    return item[1]


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
