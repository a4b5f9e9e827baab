"""OTLP trace requests (protobuf or JSON) -> OpenTelemetry SDK ``ReadableSpan`` objects.

The sidecar turns received spans into X-Ray documents with the same translator the application-side
exporter uses (:func:`tracekit.xray.segments.to_document`); that translator reads SDK spans, so this
module only rebuilds SDK spans from the wire messages and never maps to X-Ray itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import AttributeValue

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_HAS_IS_REMOTE = trace_pb2.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = trace_pb2.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_STATUS = {0: StatusCode.UNSET, 1: StatusCode.OK, 2: StatusCode.ERROR}
_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


class OtlpDecodeError(ValueError):
    """The request body is not an OTLP ExportTraceServiceRequest in the announced encoding."""


@dataclass(frozen=True)
class Decoded:
    """The spans of one request, and what was wrong with those that could not be used."""

    spans: list[ReadableSpan]
    rejected: list[str]


def parse_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Decode a request body; ``content_type`` is ``application/x-protobuf`` or ``application/json``."""
    request = ExportTraceServiceRequest()
    try:
        if content_type == PROTOBUF:
            request.ParseFromString(body)
        elif content_type == JSON:
            from google.protobuf import json_format

            data = json.loads(body)
            if not isinstance(data, dict):
                raise OtlpDecodeError("JSON body is not valid: expected an object with resourceSpans")
            _hex_ids_to_base64(data)
            json_format.ParseDict(data, request, ignore_unknown_fields=True)
        else:
            raise OtlpDecodeError(f"Content-Type {content_type!r}: expected {PROTOBUF} or {JSON}")
    except OtlpDecodeError:
        raise
    except Exception as exc:  # DecodeError, ParseError, ValueError, RecursionError...
        kind = "protobuf" if content_type == PROTOBUF else "JSON"
        raise OtlpDecodeError(f"body is not an OTLP ExportTraceServiceRequest ({kind}): {exc}") from None
    return request


def to_readable_spans(request: ExportTraceServiceRequest) -> Decoded:
    """Every usable span of the request; a span with invalid ids is rejected, the others kept."""
    spans: list[ReadableSpan] = []
    rejected: list[str] = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = Resource(_attributes(resource_spans.resource.attributes))
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version or None)
            for i, span in enumerate(scope_spans.spans):
                problem = _check_ids(span)
                if problem:
                    rejected.append(f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]: {problem}")
                    continue
                spans.append(_span(span, resource, scope))
    return Decoded(spans, rejected)


def span_count(request: ExportTraceServiceRequest) -> int:
    """How many spans a request holds (to report partial success)."""
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _check_ids(span: trace_pb2.Span) -> str | None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return f"traceId {span.trace_id.hex()!r} is not valid: expected 16 bytes, not all zero"
    if len(span.span_id) != 8 or not any(span.span_id):
        return f"spanId {span.span_id.hex()!r} is not valid: expected 8 bytes, not all zero"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return f"parentSpanId {span.parent_span_id.hex()!r} is not valid: expected 8 bytes or empty"
    return None


def _span(span: trace_pb2.Span, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    trace_id = int.from_bytes(span.trace_id, "big")
    flags = TraceFlags(span.flags & 0xFF)
    state = _trace_state(span.trace_state)
    context = SpanContext(trace_id, int.from_bytes(span.span_id, "big"), False, flags, state)
    parent = None
    if any(span.parent_span_id):
        remote = bool(span.flags & _IS_REMOTE) if span.flags & _HAS_IS_REMOTE else False
        parent = SpanContext(trace_id, int.from_bytes(span.parent_span_id, "big"), remote, flags)
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=_attributes(span.attributes),
        events=[
            Event(e.name, _attributes(e.attributes), e.time_unix_nano or None) for e in span.events
        ],
        links=[_link(link) for link in span.links if len(link.trace_id) == 16 and len(link.span_id) == 8],
        kind=_kind(span.kind),
        status=Status(_STATUS.get(span.status.code, StatusCode.UNSET), span.status.message or None),
        start_time=span.start_time_unix_nano or None,
        end_time=span.end_time_unix_nano or None,
        instrumentation_scope=scope,
    )


def _kind(kind: int) -> SpanKind:
    """OTLP numbers kinds from 1 (INTERNAL); 0 (UNSPECIFIED) is treated as INTERNAL."""
    return SpanKind(kind - 1) if 1 <= kind <= 5 else SpanKind.INTERNAL


def _link(link: trace_pb2.Span.Link) -> Link:
    context = SpanContext(
        int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"), True
    )
    return Link(context, _attributes(link.attributes))


def _trace_state(header: str) -> TraceState | None:
    if not header:
        return None
    try:
        return TraceState.from_header([header])
    except ValueError:
        return None


def _attributes(pairs: Sequence[KeyValue]) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for pair in pairs:
        value = _value(pair.value)
        if value is not None:
            out[pair.key] = value
    return out


def _value(value: AnyValue) -> AttributeValue | None:
    """SDK attributes hold scalars and homogeneous scalar lists; anything else becomes JSON text."""
    field = value.WhichOneof("value")
    if field is None:
        return None
    if field in ("string_value", "bool_value", "int_value", "double_value"):
        scalar: AttributeValue = getattr(value, field)
        return scalar
    if field == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if field == "array_value":
        items = [_plain(v) for v in value.array_value.values]
        kinds = {type(item) for item in items}
        if len(kinds) <= 1 and kinds <= {str, bool, int, float}:
            return cast(AttributeValue, tuple(items))
        return json.dumps(items, default=str)
    return json.dumps(_plain(value), default=str)


def _plain(value: AnyValue) -> object:
    field = value.WhichOneof("value")
    if field == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if field == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if field == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, field) if field else None


def _hex_ids_to_base64(node: object) -> None:
    """OTLP/JSON writes ids as hex, protobuf's JSON mapping expects base64: convert them in place."""
    for obj in _objects(node):
        for key, size in _ID_FIELDS.items():
            text = obj.get(key)
            if isinstance(text, str) and text:
                try:
                    raw = bytes.fromhex(text)
                except ValueError:
                    raise OtlpDecodeError(f"{key} {text!r} is not valid: expected hex") from None
                if len(raw) != size:
                    raise OtlpDecodeError(f"{key} {text!r} is not valid: expected {2 * size} hex digits")
                obj[key] = base64.b64encode(raw).decode()


def _objects(node: object) -> Iterator[dict[str, object]]:
    """Every JSON object in the tree (iteratively, so deep nesting cannot blow the stack)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)

