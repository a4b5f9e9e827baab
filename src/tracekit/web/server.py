"""What the WSGI and ASGI middlewares share: one server span per request, from start to status.

The protocol adapters (``tracekit.web.wsgi``, ``tracekit.web.asgi``) only translate their request and
response shapes; exclusion, trace-header handling, semconv attributes (which the X-Ray translator
turns into ``http.request`` / ``http.response``), sensitive-data filtering, status mapping, the
RED-metrics hook and the per-request log buffer live here, so both behave the same. Every entry
point is guarded: a failure inside tracekit is counted and the request goes on untraced.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util.types import AttributeValue

from tracekit._shared import hooks, stats
from tracekit._shared.redaction import REDACTED, is_sensitive
from tracekit._shared.settings import ConfigError
from tracekit.tracing import current, propagation, provider
from tracekit.xray import ids

HEALTH_PATHS = ("health", "healthz", "healthcheck", "ping", "ready", "readyz", "live", "livez")
"""Excluded by default (``/health``, ``/healthz/`` ...): load balancers poll them constantly."""
DEFAULT_EXCLUDED = r"^[^:/]+://[^/]+/(?:" + "|".join(HEALTH_PATHS) + r")/?(?:\?|$)"
RESPONSE_HEADER = propagation.HEADER
TRACE_HEADERS = ("traceparent", "tracestate", "x-amzn-trace-id")
"""Inbound headers worth a propagator call; without them the request starts a new trace."""

_UNSAFE_PATH = re.compile(r"[^A-Za-z0-9/._~!$&'()*+,;=:@%-]")
RecordRequest = Callable[[str, str, int, float], None]


def instrument_options(
    excluded_urls: str | Sequence[str] | None, capture_headers: Sequence[str], record_metrics: bool
) -> dict[str, object]:
    """The options of an ``instrument(app, ...)`` call, comparable with a later call's."""
    urls = excluded_urls if excluded_urls is None or isinstance(excluded_urls, str) else tuple(excluded_urls)
    return {
        "excluded_urls": urls, "capture_headers": tuple(capture_headers), "record_metrics": record_metrics
    }


def warn_if_reinstrumented(framework: str, kept: Mapping[str, object], given: Mapping[str, object]) -> None:
    """An app is instrumented once; a later call with other options changes nothing, and says so."""
    changed = [f"{key}={given[key]!r}" for key in given if given[key] != kept.get(key)]
    if not changed:
        return
    stats.incr(f"{framework}.reinstrumented")
    stats.warn_once_per_interval(
        f"{framework}.reinstrumented",
        "tracekit: this %s app is already instrumented; %s ignored (instrument once, with every option)",
        framework,
        ", ".join(changed),
    )


class Excluded:
    """Regular expressions searched in the full request URL (OpenTelemetry's convention)."""

    def __init__(self, patterns: Sequence[str], source: str) -> None:
        self.patterns = tuple(p for p in (p.strip() for p in patterns) if p)
        try:
            self._regex = (
                re.compile("|".join(f"(?:{p})" for p in self.patterns)) if self.patterns else None
            )
        except re.error as exc:
            raise ConfigError(
                source, ",".join(self.patterns), f"regular expressions ({exc})"
            ) from exc

    def __call__(self, url: str) -> bool:
        return self._regex is not None and self._regex.search(url) is not None


def excluded_urls(
    framework: str, value: str | Sequence[str] | None, env: Mapping[str, str] | None = None
) -> Excluded:
    """The argument, else ``OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS``, else
    ``OTEL_PYTHON_EXCLUDED_URLS``, else the health-check paths. Each is a comma list of regular
    expressions; an empty one excludes nothing.
    """
    if value is not None:
        items = value.split(",") if isinstance(value, str) else list(value)
        return Excluded(items, "excluded_urls")
    env = os.environ if env is None else env
    for name in (f"OTEL_PYTHON_{framework.upper()}_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"):
        if name in env:
            return Excluded(env[name].split(","), name)
    return Excluded([DEFAULT_EXCLUDED], "excluded_urls")


def checked_headers(names: Iterable[str]) -> tuple[str, ...]:
    """Header names to record as ``http.request.header.<name>``; sensitive ones are refused."""
    result = tuple(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    refused = [n for n in result if is_sensitive(n)]
    if refused:
        raise ConfigError(
            "capture_headers",
            refused,
            "header names that are not sensitive (they are never recorded)",
        )
    return result


def full_url(scheme: str, host: str, path: str, query: str) -> str:
    """``scheme://host/path?query``, unsafe path characters quoted, secret query values hidden."""
    if _UNSAFE_PATH.search(path):
        from urllib.parse import quote

        path = quote(path, safe="/%:@!$&'()*+,;=-._~")
    url = f"{scheme}://{host}{path}"
    return f"{url}?{redact_query(query)}" if query else url


def redact_query(query: str) -> str:
    """``token=abc&q=1`` -> ``token=[REDACTED]&q=1``: URLs often carry credentials."""
    parts = query.split("&")
    for i, part in enumerate(parts):
        key, sep, _ = part.partition("=")
        if sep and is_sensitive(key):
            parts[i] = f"{key}={REDACTED}"
    return "&".join(parts)


class Request:
    """One request: its span and context, and what the response said so far.

    ``header`` is the response's ``X-Amzn-Trace-Id``, empty for an excluded request; ``route`` the
    template, when the protocol adapter learns it before the end.
    """

    __slots__ = (
        "context", "error", "header", "method", "red_only", "route", "size", "span", "start", "status"
    )

    def __init__(self, span: Span, context: Context, method: str, header: str) -> None:
        self.span, self.context, self.method, self.header = span, context, method, header
        self.status = 0
        self.size: int | None = None
        self.error: BaseException | None = None
        self.route: str | None = None
        self.red_only = False
        """Tracing is off but metrics are on: only the RED metrics are recorded."""
        self.start = time.perf_counter()

    def fail(self, exc: BaseException) -> None:
        """An exception escaped the application: cause on the span, a 500 unless already sent."""
        if exc is self.error:
            return
        self.error = exc
        try:
            if not self.status:
                self.status = 500
            if self.span.is_recording():
                self.span.record_exception(exc)
                self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:256]))
        except Exception as err:
            stats.report("web.record_exception", err)


class ServerTracing:
    """Per-application settings and the start/finish steps of a server span."""

    def __init__(
        self,
        framework: str,
        excluded: str | Sequence[str] | None = None,
        capture_headers: Iterable[str] = (),
        record_metrics: bool = True,
    ) -> None:
        self.excluded = excluded_urls(framework, excluded)
        self.capture_headers = checked_headers(capture_headers)
        self.header_names = (*TRACE_HEADERS, "user-agent", "x-forwarded-for", *self.capture_headers)
        """Every request header :meth:`start` may ask for (lower case)."""
        self._record: RecordRequest | None = _metrics_hook() if record_metrics else None

    def start(
        self,
        method: str,
        url: str,
        path: str,
        host: str,
        headers: Callable[[str], str | None],
        peer: str | None,
    ) -> Request | None:
        """Start the server span and make it current; ``None``: leave this request alone."""
        try:
            tracer = provider.get_tracer()
            if tracer is None:  # RED metrics alone, if they are on
                metrics = hooks.metrics
                on = self._record is not None and metrics is not None and metrics.is_configured()
                return self._red_only(method) if on else None
            if self.excluded(url):
                return _excluded(method)
            carrier = {name: value for name in TRACE_HEADERS if (value := headers(name))}
            parent = extract(carrier) if carrier else None
            attributes = self._attributes(method, url, path, host, headers, peer)
            span = tracer.start_span(method, parent, SpanKind.SERVER, attributes)
            context = otel_trace.set_span_in_context(span, parent)
            request = Request(span, context, method, _response_header(span, parent))
            if hooks.logs is not None:  # the application logs with tracekit: per-request debug buffer
                hooks.logs.request_started()
            return request
        except Exception as exc:
            stats.report("web.start", exc)
            return None

    def finish(self, request: Request, route: str | None) -> None:
        """Name the span after the route template, record the response, end, count."""
        if not request.header:  # excluded, or not traced
            if request.red_only:
                self._record_red(request, route)
            return
        try:
            span, status = request.span, request.status
            if span.is_recording():
                attributes: dict[str, AttributeValue] = {"http.response.status_code": status}
                if request.size is not None:
                    attributes["http.response.body.size"] = request.size
                if route:
                    attributes["http.route"] = route
                    span.update_name(route)
                span.set_attributes(attributes)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
            if hooks.logs is not None:
                _finish_request_log(hooks.logs, request, route, status)
            self._record_red(request, route)
        except Exception as exc:
            stats.report("web.finish", exc)

    def _record_red(self, request: Request, route: str | None) -> None:
        if self._record is not None:
            elapsed = (time.perf_counter() - request.start) * 1000.0
            self._record(route or "UNMATCHED", request.method, request.status, elapsed)

    @staticmethod
    def _red_only(method: str) -> Request:
        request = Request(INVALID_SPAN, current.get_current(), method, "")
        request.red_only = True
        return request

    def _attributes(
        self,
        method: str,
        url: str,
        path: str,
        host: str,
        headers: Callable[[str], str | None],
        peer: str | None,
    ) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            "http.request.method": method,
            "url.full": url,
            "url.path": path,
            "server.address": host,
        }
        agent = headers("user-agent")
        if agent:
            attributes["user_agent.original"] = agent
        forwarded = headers("x-forwarded-for")
        if forwarded:
            attributes["client.address"] = forwarded.split(",", 1)[0].strip()
            attributes["x_forwarded_for"] = True
        elif peer:
            attributes["client.address"] = peer
        for name in self.capture_headers:
            value = headers(name)
            if value is not None:
                attributes[f"http.request.header.{name}"] = (value,)
        return attributes


def _excluded(method: str) -> Request:
    """An excluded request runs under an unsampled parent: what it calls is not traced either."""
    generator = ids.XRayIdGenerator()
    flags = TraceFlags(TraceFlags.DEFAULT)
    parent = NonRecordingSpan(
        SpanContext(generator.generate_trace_id(), generator.generate_span_id(), False, flags)
    )
    return Request(parent, otel_trace.set_span_in_context(parent), method, "")


def _finish_request_log(
    logs: hooks.LogHooks, request: Request, route: str | None, status: int
) -> None:
    """Flush the request's debug buffer (on error) and its summary line, inside its trace."""
    token = current.attach(request.context)
    try:
        logs.request_finished(
            error=status >= 500 or request.error is not None,
            route=route or "UNMATCHED",
            method=request.method,
            status=status,
        )
    finally:
        current.detach(token)


def _response_header(span: Span, parent: Any) -> str:
    """``Root=...`` for the response, plus ``Sampled=`` when the caller asked us to decide."""
    context = span.get_span_context()
    root = f"Root={ids.to_xray_trace_id(context.trace_id)}"
    if parent is not None and propagation.decision_requested(parent):
        return f"{root};Sampled={int(context.trace_flags.sampled)}"
    return root


def _metrics_hook() -> RecordRequest | None:
    """``tracekit.metrics.record_request`` when the metrics module is there (it is optional)."""
    try:
        from tracekit.metrics import record_request
    except ImportError:
        return None
    return record_request


def status_code(status: str) -> int:
    """``"404 NOT FOUND"`` -> 404; 0 when the status line is malformed."""
    code = status[:3]
    return int(code) if code.isdigit() else 0
