"""The OTLP side of ``tracekit.configure``: exporter, counting and redaction.

Kept apart from the provider so that an X-Ray-only process (Lambda) never imports the SDK's export
machinery. OTLP/HTTP to X-Ray's endpoint (``https://xray.<region>.amazonaws.com/v1/traces``) is
SigV4-signed (:mod:`tracekit._shared.otlp_http`); ``TRACEKIT_OTLP_SIGV4`` forces or disables it.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from tracekit._shared import stats
from tracekit._shared.redaction import REDACTED, is_sensitive
from tracekit.tracing import config as _config


def otlp_processor(cfg: _config.Config) -> SpanProcessor:
    """A batching processor sending redacted spans to the configured OTLP endpoint."""
    return BatchSpanProcessor(CountingExporter(_otlp_exporter(cfg), "otlp"))


def console_processor() -> SpanProcessor:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return BatchSpanProcessor(ConsoleSpanExporter())


def _otlp_exporter(cfg: _config.Config) -> SpanExporter:
    headers = dict(cfg.otlp_headers)
    if cfg.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        endpoint = cfg.otlp_endpoint or "http://localhost:4317"
        return GrpcExporter(endpoint=endpoint.removesuffix("/v1/traces"), headers=headers)
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    from tracekit._shared import otlp_http

    endpoint = cfg.otlp_endpoint or "http://localhost:4318/v1/traces"
    session = otlp_http.session(
        endpoint, cfg.otlp_sigv4, default_service="xray", region=cfg.region, name="otlp"
    )
    otlp_http.quiet_exporter_logs(trace_exporter.__name__)
    return trace_exporter.OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=5, session=session)


class CountingExporter(SpanExporter):
    """Counts what an exporter sent and failed, so that OTLP trouble shows in ``tracekit.stats()``."""

    def __init__(self, inner: SpanExporter, name: str) -> None:
        self._inner, self._name = inner, name

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export([_redacted(span) for span in spans])
        except Exception as exc:
            stats.report(f"{self._name}.export", exc)
            result = SpanExportResult.FAILURE
        outcome = "spans_exported" if result is SpanExportResult.SUCCESS else "spans_failed"
        stats.incr(f"{self._name}.{outcome}", len(spans))
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self._inner.shutdown()


def _redacted(span: ReadableSpan) -> ReadableSpan:
    """``span`` with the values of sensitive attributes replaced (a copy only when needed)."""
    attributes = span.attributes or {}
    if not any(is_sensitive(key) for key in attributes):
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes={k: REDACTED if is_sensitive(k) else v for k, v in attributes.items()},
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
