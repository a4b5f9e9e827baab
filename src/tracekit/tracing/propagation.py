"""The ``X-Amzn-Trace-Id`` header, and an OpenTelemetry propagator for it.

Header form: ``Root=1-...;Parent=<16 hex>;Sampled=0|1|?;Lineage=...`` (keys order-free, unknown keys
kept when forwarding, at most 256 characters). Malformed input never raises: it yields ``None`` and
the request starts a fresh trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from tracekit.xray import ids

HEADER = "X-Amzn-Trace-Id"
MAX_HEADER_LEN = 256
_KNOWN = ("Root", "Parent", "Sampled")
_CARRY_KEY = "tracekit.xray_extra"
_REQUESTED_KEY = "tracekit.xray_sampled_requested"


class XRayHeader(NamedTuple):
    """A parsed trace header. ``sampled`` is True, False, or None for ``?`` / absent.

    A NamedTuple (cheap to define on a cold start), not a dataclass."""

    root: int
    parent: int | None = None
    sampled: bool | None = None
    decision_requested: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    def to_header(self) -> str:
        return format_header(self.root, self.parent, self.sampled, self.extra)


def parse_header(value: str | None) -> XRayHeader | None:
    """Parse an ``X-Amzn-Trace-Id`` value; ``None`` if it has no valid Root."""
    if not value or len(value) > MAX_HEADER_LEN * 4:
        return None
    fields: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    for part in value.split(";"):
        key, sep, val = part.strip().partition("=")
        if not sep or not key:
            continue
        key, val = key.strip(), val.strip()
        if key in _KNOWN:
            fields.setdefault(key, val)
        else:
            extra.append((key, val))
    root = ids.from_xray_trace_id(fields.get("Root", ""))
    if root is None:
        return None
    parent = ids.from_span_id(fields["Parent"].lower()) if "Parent" in fields else None
    flag = fields.get("Sampled")
    sampled = {"1": True, "0": False}.get(flag or "")
    return XRayHeader(root, parent, sampled, flag == "?", tuple(extra))


def format_header(
    root: int,
    parent: int | None,
    sampled: bool | None,
    extra: Iterable[tuple[str, str]] = (),
) -> str:
    """Build a header value; unknown keys are appended while they fit in 256 characters."""
    parts = [f"Root={ids.to_xray_trace_id(root)}"]
    if parent:
        parts.append(f"Parent={ids.to_span_id(parent)}")
    parts.append("Sampled=?" if sampled is None else f"Sampled={int(sampled)}")
    text = ";".join(parts)
    for key, val in extra:
        candidate = f"{text};{key}={val}"
        if len(candidate) > MAX_HEADER_LEN:
            break
        text = candidate
    return text


def header_for(span_context: SpanContext, extra: Iterable[tuple[str, str]] = ()) -> str:
    """The header to send downstream from ``span_context`` (the callee's parent is this span).

    Forwarding a Root-only header without a span of our own sends it on Root-only: the stand-in
    parent id (``ids.synthetic_parent_id``) names no real segment.
    """
    trace_id, span_id = span_context.trace_id, span_context.span_id
    parent = None if span_id == ids.synthetic_parent_id(trace_id) else span_id
    return format_header(trace_id, parent, span_context.trace_flags.sampled, extra)


class XRayPropagator(TextMapPropagator):
    """Extracts and injects ``X-Amzn-Trace-Id``, keeping Lineage and unknown keys.

    A header with ``Sampled=?`` or no ``Sampled`` yields a non-sampled-flagged parent whose
    ``tracekit.xray_sampled_requested`` context key tells the sampler the decision is still open.
    """

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        ctx = context if context is not None else Context()
        values = getter.get(carrier, HEADER) or getter.get(carrier, HEADER.lower())
        header = parse_header(values[0] if values else None)
        if header is None:
            return ctx
        # Root only: no parent span to attach to, but keep the trace id and decision.
        parent_id = header.parent or ids.synthetic_parent_id(header.root)
        span_context = SpanContext(
            trace_id=header.root,
            span_id=parent_id,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if header.sampled else TraceFlags.DEFAULT),
            trace_state=TraceState(),
        )
        ctx = trace.set_span_in_context(NonRecordingSpan(span_context), ctx)
        return _set(ctx, header)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            return
        extra = _get_extra(context)
        setter.set(carrier, HEADER, header_for(span_context, extra))

    @property
    def fields(self) -> set[str]:
        return {HEADER}


def _set(ctx: Context, header: XRayHeader) -> Context:
    from opentelemetry.context import set_value

    ctx = set_value(_CARRY_KEY, header.extra, ctx)
    if header.sampled is None:
        ctx = set_value(_REQUESTED_KEY, True, ctx)
    return ctx


def _get_extra(context: Context | None) -> tuple[tuple[str, str], ...]:
    from opentelemetry.context import get_value

    value = get_value(_CARRY_KEY, context)
    return value if isinstance(value, tuple) else ()


def decision_requested(context: Context | None = None) -> bool:
    """True when the inbound header left the sampling decision to us (``Sampled=?`` or absent)."""
    from opentelemetry.context import get_value

    return bool(get_value(_REQUESTED_KEY, context))
