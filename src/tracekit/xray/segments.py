"""OpenTelemetry span -> X-Ray segment document.

Follows the mapping of the OpenTelemetry Collector's awsxray exporter (aws-facts.md §7) so that a
trace looks the same in X-Ray whether it came through tracekit, the sidecar's OTLP receiver or ADOT.
Shared by the application-side exporter and the sidecar.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from tracekit._shared.redaction import REDACTED, is_sensitive
from tracekit._shared.settings import VERSION
from tracekit.xray import ids

if TYPE_CHECKING:  # the SDK's span or tracekit's lean span: the same read interface
    from opentelemetry.sdk.trace import ReadableSpan

Document = dict[str, Any]

ANNOTATIONS_ATTR = "aws.xray.annotations"
"""Span attribute listing which attribute keys are indexed X-Ray annotations."""
METADATA_PREFIX = "aws.xray.metadata."
"""``aws.xray.metadata.<ns>`` holds a JSON object for metadata namespace ``<ns>``."""
SDK_ENTITY_ATTR = "aws.xray.sdk_entity"
"""A JSON object of what the X-Ray SDK recorded on an entity (bridge, ``tracing/xray_sdk_bridge.py``):
its fields take the place of those worked out from the span."""
AWS_PARAMS_ATTR = "aws.xray.aws_params"
"""A JSON object merged into the ``aws`` block: the call parameters the X-Ray SDK records
(``tracing/aws_calls.py``)."""

ROUTE_ANNOTATION = "http_route"
"""The annotation holding a server span's route template (``http.route``)."""

MAX_NAME = 200
MAX_ANNOTATION_KEY = 500
MAX_ANNOTATIONS = 50
MAX_STACK = 50
SDK = {"sdk": "tracekit (OpenTelemetry)", "sdk_version": VERSION}

_NAME_INVALID = re.compile(r"[^\w.:/%&#=+\-@ ]", re.UNICODE)
_KEY_INVALID = re.compile(r"[^A-Za-z0-9_]")
_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<label>.+)$')

_ORIGINS = {
    "aws_ec2": "AWS::EC2::Instance",
    "aws_eks": "AWS::EKS::Container",
    "aws_elastic_beanstalk": "AWS::ElasticBeanstalk::Environment",
    "aws_app_runner": "AWS::AppRunner::Service",
}
_AWS_KEYS = {
    "aws.operation": "operation",
    "rpc.method": "operation",
    "aws.account_id": "account_id",
    "aws.region": "region",
    "cloud.region": "region",
    "aws.request_id": "request_id",
    "aws.request.id": "request_id",
    "aws.queue_url": "queue_url",
    "aws.sqs.queue_url": "queue_url",
    "aws.table_name": "table_name",
    "aws.dynamodb.table_names": "table_name",
}
_AWS_KEY_SET = frozenset(_AWS_KEYS)
_HTTP_REQUEST = {
    "http.method": "method",
    "http.request.method": "method",
    "http.url": "url",
    "url.full": "url",
    "http.user_agent": "user_agent",
    "user_agent.original": "user_agent",
    "http.client_ip": "client_ip",
    "client.address": "client_ip",
}
_HTTP_REQUEST_FIELDS = tuple(
    (field, tuple(key for key, named in _HTTP_REQUEST.items() if named == field))
    for field in dict.fromkeys(_HTTP_REQUEST.values())
)
"""Each ``http.request`` field and the attributes that give it, the older convention first."""
_HTTP_STATUS = ("http.status_code", "http.response.status_code")
_HTTP_LENGTH = ("http.response_content_length", "http.response.body.size")
_URL_PARTS = (
    ("http.scheme", "url.scheme"),
    ("http.host", "server.address", "http.server_name", "net.host.name"),
    ("http.target", "url.path"),
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HTTP_KEYS = frozenset(
    [*_HTTP_REQUEST, *_HTTP_STATUS, *_HTTP_LENGTH, *(key for keys in _URL_PARTS for key in keys)]
)
"""Any of these makes an ``http`` block."""
# Attributes that become structure rather than metadata.
_CONSUMED = frozenset(
    [
        *_AWS_KEYS,
        *_HTTP_REQUEST,
        *_HTTP_STATUS,
        *_HTTP_LENGTH,
        "http.scheme",
        "url.scheme",
        "http.host",
        "http.target",
        "url.path",
        "server.address",
        "url.query",
        "server.port",
        "http.route",
        "x_forwarded_for",
        "enduser.id",
        "rpc.system",
        "rpc.service",
        "aws.service",
        "aws.remote.service",
        "aws.local.service",
        "peer.service",
        ANNOTATIONS_ATTR,
        AWS_PARAMS_ATTR,
        SDK_ENTITY_ATTR,
        "aws.xray.sampling_rule_name",
    ]
)
_SQL_KEYS = frozenset(("db.system", "db.system.name", "db.user", "db.statement", "db.query.text", "db.name",
                       "db.namespace", "net.peer.name", "net.peer.port"))
"""What a database call's ``sql`` block takes (the statement is dropped unless asked for)."""
_AWS_CALL_DETAIL = ("aws.", "rpc.", "db.", "net.", "messaging.", "server.", "cloud.", "retry_attempts")
"""What the botocore instrumentation adds beside the ``aws`` block; the X-Ray SDK records none of it."""


def is_local_root(span: ReadableSpan) -> bool:
    """A span whose parent is not in this process: it starts a document of its own."""
    parent = span.parent
    return parent is None or parent.is_remote


def is_segment(span: ReadableSpan) -> bool:
    """SERVER spans and parentless spans are segments; everything else is a subsegment.

    A Root-only header (``ids.synthetic_parent_id``) gives no parent to hang a subsegment on, so
    its first span is a segment too: X-Ray rejects a subsegment document without ``parent_id``.
    """
    return span.kind is SpanKind.SERVER or _real_parent_id(span) is None


def _real_parent_id(span: ReadableSpan) -> int | None:
    parent, context = span.parent, span.context
    if parent is None or context is None:
        return None
    return None if parent.span_id == ids.synthetic_parent_id(context.trace_id) else parent.span_id


def to_document(
    span: ReadableSpan, *, annotate_all: bool = False, standalone: bool = True, sql_query: bool = False
) -> Document:
    """Translate one span. ``standalone`` adds what a document sent on its own needs; ``sql_query``
    keeps a database call's statement (``sql.sanitized_query``)."""
    attrs = _plain_attributes(span)
    context = span.context
    assert context is not None
    segment = is_segment(span)
    resource = _resource(span)
    doc: Document = {
        "name": _name(span, attrs, segment, resource),
        "id": ids.to_span_id(context.span_id),
        "start_time": (span.start_time or 0) / 1e9,
    }
    if span.end_time is None:
        doc["in_progress"] = True
    else:
        doc["end_time"] = span.end_time / 1e9
    if segment or standalone:
        doc["trace_id"] = ids.to_xray_trace_id(context.trace_id)
        parent_id = _real_parent_id(span)
        if parent_id is not None:
            doc["parent_id"] = ids.to_span_id(parent_id)
    if not segment:
        if standalone:
            doc["type"] = "subsegment"
        namespace = _namespace(span, attrs)
        if namespace:
            doc["namespace"] = namespace
    status = _status_code(attrs)
    _add_http(doc, attrs, status, client=span.kind is SpanKind.CLIENT)
    # a database call's subsegment (not the AWS SDK's: its DynamoDB spans carry db.* too)
    if not segment and attrs.get("rpc.system") != "aws-api" and _add_sql(doc, attrs, sql_query):
        attrs = {k: v for k, v in attrs.items() if k not in _SQL_KEYS}
    _add_status(doc, span, status)
    if span.events:
        _add_cause(doc, span)
    _add_aws(doc, attrs, resource if segment else None)
    if doc.get("namespace") == "aws":
        attrs = {k: v for k, v in attrs.items() if not k.startswith(_AWS_CALL_DETAIL)}
        if "cause" in doc:
            doc["fault"] = True  # the X-Ray SDK records an AWS error with add_exception: a fault
    _add_annotations_and_metadata(doc, attrs, annotate_all)
    if segment:
        doc.update(resource.top)
    recorded = _loads(attrs.get(SDK_ENTITY_ATTR)) if SDK_ENTITY_ATTR in attrs else None
    if isinstance(recorded, dict):
        _merge_sdk_entity(doc, recorded, segment)
    if span.links:
        doc["links"] = [
            {"trace_id": ids.to_xray_trace_id(link.context.trace_id),
             "id": ids.to_span_id(link.context.span_id)}
            for link in span.links
        ]
    return doc


def _merge_sdk_entity(doc: Document, recorded: dict[str, Any], segment: bool) -> None:
    """What the X-Ray SDK recorded wins over what the span implies: it is what the SDK would send."""
    if isinstance(recorded.get("name"), str):
        doc["name"] = sanitize_name(recorded["name"])
    if not segment and recorded.get("namespace") in ("aws", "remote", "local"):
        doc["namespace"] = recorded["namespace"]
    for flag in ("error", "fault", "throttle"):
        doc.pop(flag, None)
        if recorded.get(flag):
            doc[flag] = True
    if "cause" in recorded:
        doc["cause"] = recorded["cause"]
    for block in ("http", "annotations", "metadata", "aws", "sql"):
        value = recorded.get(block)
        if not isinstance(value, dict) or not value or (block == "sql" and segment):
            continue
        merged = doc.setdefault(block, {})
        for key, inner in value.items():
            if block == "aws" and key == "xray":
                continue  # tracekit sends the document: its sdk block stays
            if isinstance(inner, dict) and isinstance(merged.get(key), dict) and block != "annotations":
                merged[key] = {**merged[key], **inner}
            else:
                merged[key] = inner
    if isinstance(recorded.get("user"), str):
        doc["user"] = recorded["user"]
    if segment and isinstance(recorded.get("origin"), str):
        doc["origin"] = recorded["origin"]


def _plain_attributes(span: ReadableSpan) -> dict[str, AttributeValue]:
    """One copy into a plain dict: the SDK's attribute mapping answers each lookup (mostly misses)
    in Python, and translation does dozens of them. Copying through its public view also runs in
    Python (~2 µs a span), so the SDK's own dict is copied when it is there (a finished span's
    attributes no longer change)."""
    raw = getattr(span, "_attributes", None)
    inner = getattr(raw, "_dict", raw)
    if isinstance(inner, dict):
        return dict(inner)
    return dict(span.attributes or ())


_NAMING = frozenset(("aws.local.service", "peer.service", "aws.service", "db.name", "db.namespace"))
"""Attributes that can name a segment before its resource's service does."""


def _name(
    span: ReadableSpan, attrs: Mapping[str, AttributeValue], segment: bool, parts: _ResourceParts
) -> str:
    if segment and _NAMING.isdisjoint(attrs):
        named = parts.segment_name  # the usual case, worked out once per resource
        if named:
            return named
    resource = parts.attributes
    candidates: list[object] = []
    if segment:
        candidates += [attrs.get("aws.local.service"), resource.get("aws.local.service")]
    else:
        candidates.append(attrs.get("aws.remote.service"))
    candidates += [attrs.get("peer.service"), attrs.get("aws.service")]
    db_name = attrs.get("db.name") or attrs.get("db.namespace")
    if db_name:
        host = attrs.get("net.peer.name") or attrs.get("server.address")
        candidates.append(f"{db_name}@{host}" if host else db_name)
    if segment:
        candidates.append(resource.get("service.name"))
    candidates.append(attrs.get("rpc.service"))
    if span.kind is SpanKind.CLIENT:
        candidates += [attrs.get("http.host"), attrs.get("server.address"), attrs.get("net.peer.name"),
                       _url_host(attrs)]
    candidates.append(span.name)
    for value in candidates:
        if isinstance(value, str) and value and not value.startswith("unknown_service"):
            return sanitize_name(value)
    return sanitize_name(span.name) or "span"


def _url_host(attrs: Mapping[str, AttributeValue]) -> str | None:
    """An HTTP client call is named by the host it calls, as the X-Ray SDK names it."""
    url = _first(attrs, ("url.full", "http.url"))
    if not isinstance(url, str):
        return None
    from urllib.parse import urlsplit  # client spans only: not on a Lambda cold path

    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)  # the same few names (service, routes) come back all the time
def sanitize_name(name: str) -> str:
    """X-Ray names: at most 200 characters, without the characters X-Ray rejects."""
    return _NAME_INVALID.sub("_", name)[:MAX_NAME] or "span"


def sanitize_key(key: str) -> str:
    """Annotation keys may only hold ``[A-Za-z0-9_]``; other characters become ``_``."""
    return _KEY_INVALID.sub("_", key)[:MAX_ANNOTATION_KEY]


def _namespace(span: ReadableSpan, attrs: Mapping[str, AttributeValue]) -> str | None:
    if attrs.get("rpc.system") == "aws-api" or "aws.service" in attrs:
        return "aws"
    if span.kind in (SpanKind.CLIENT, SpanKind.PRODUCER):
        return "remote"
    return None


def _first(attrs: Mapping[str, AttributeValue], keys: Sequence[str]) -> AttributeValue | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _status_code(attrs: Mapping[str, AttributeValue]) -> int | None:
    value = _first(attrs, _HTTP_STATUS)
    try:
        return int(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _add_http(
    doc: Document, attrs: Mapping[str, AttributeValue], status: int | None, client: bool = False
) -> None:
    if _HTTP_KEYS.isdisjoint(attrs):  # most internal spans
        return
    request: dict[str, Any] = {}
    for field, keys in _HTTP_REQUEST_FIELDS:
        for key in keys:
            value = attrs.get(key)
            if value is not None:
                request[field] = value
                break
    if client:  # outbound: what the X-Ray SDK records, the URL without its query
        request.pop("user_agent", None)
        if isinstance(request.get("url"), str):
            request["url"] = request["url"].split("?", 1)[0]
    if "url" not in request:
        scheme, host, target = (_first(attrs, keys) for keys in _URL_PARTS)
        if host and target is not None:
            scheme = scheme or "http"
            port = _first(attrs, ("server.port", "net.host.port")) if "http.host" not in attrs else None
            if port and port != _DEFAULT_PORTS.get(str(scheme)):
                host = f"{host}:{port}"  # http.host already carries the port of the Host header
            query = attrs.get("url.query")
            request["url"] = f"{scheme}://{host}{target}" + (f"?{query}" if query else "")
    # http.client_ip is the client's address as told by X-Forwarded-For (old semconv).
    forwarded = attrs.get("x_forwarded_for", "http.client_ip" in attrs or None)
    if "client_ip" in request and forwarded is not None:
        request["x_forwarded_for"] = bool(forwarded)
    response: dict[str, Any] = {}
    if status is not None:
        response["status"] = status
    length = _first(attrs, _HTTP_LENGTH)
    if isinstance(length, int):
        response["content_length"] = length
    if request or response:
        http: dict[str, Any] = {}
        if request:
            http["request"] = request
        if response:
            http["response"] = response
        doc["http"] = http


def _add_sql(doc: Document, attrs: Mapping[str, AttributeValue], with_query: bool) -> bool:
    """The ``sql`` block of a database call: URL (never a password), type, user; the query if asked."""
    system = _first(attrs, ("db.system", "db.system.name"))
    if not isinstance(system, str):
        return False
    name = _first(attrs, ("db.name", "db.namespace"))
    host = _first(attrs, ("net.peer.name", "server.address"))
    port = _first(attrs, ("net.peer.port", "server.port"))
    user = attrs.get("db.user")
    sql: dict[str, Any] = {"database_type": system}
    if host:
        authority = f"{user}@{host}" if user else str(host)
        authority += f":{port}" if port else ""
        sql["url"] = f"{system}://{authority}/{name or ''}"
    elif name:
        sql["url"] = str(name)
    if user:
        sql["user"] = user
    query = _first(attrs, ("db.statement", "db.query.text"))
    if with_query and isinstance(query, str):
        sql["sanitized_query"] = query
    doc["sql"] = sql
    return True


def _add_status(doc: Document, span: ReadableSpan, status: int | None) -> None:
    if status is not None and status >= 500:
        doc["fault"] = True
    elif status == 429:
        doc["error"] = doc["throttle"] = True
    elif status is not None and status >= 400:
        doc["error"] = True
    elif span.status.status_code is StatusCode.ERROR:
        doc["fault"] = True


def _add_cause(doc: Document, span: ReadableSpan) -> None:
    exceptions: list[dict[str, Any]] = []
    remote = span.kind in (SpanKind.CLIENT, SpanKind.PRODUCER)
    for event in span.events:
        if event.name != "exception":
            continue
        ev = event.attributes or {}
        entry: dict[str, Any] = {
            "id": os.urandom(8).hex(),
            "type": str(ev.get("exception.type", "")),
            "message": str(ev.get("exception.message", "")),
        }
        if remote:
            entry["remote"] = True
        stack, truncated = parse_python_stack(str(ev.get("exception.stacktrace", "")))
        if stack:
            entry["stack"] = stack
        if truncated:
            entry["truncated"] = truncated
        exceptions.append(entry)
    if exceptions:
        doc["cause"] = {"working_directory": _cwd(), "exceptions": exceptions}
        if not any(k in doc for k in ("fault", "error")):
            doc["fault"] = True


_CWD: list[str] = []


def _cwd() -> str:
    if not _CWD:
        try:
            _CWD.append(os.getcwd())
        except OSError:
            _CWD.append("")
    return _CWD[0]


def parse_python_stack(text: str) -> tuple[list[dict[str, Any]], int]:
    """A Python traceback -> X-Ray frames, innermost first, at most ``MAX_STACK``; (+ how many cut)."""
    frames = []
    for line in text.splitlines():
        match = _FRAME.match(line)
        if match:
            frames.append(
                {"path": match["path"], "line": int(match["line"]), "label": match["label"].strip()}
            )
    frames.reverse()
    return frames[:MAX_STACK], max(0, len(frames) - MAX_STACK)


def _add_aws(
    doc: Document, attrs: Mapping[str, AttributeValue], segment_resource: _ResourceParts | None
) -> None:
    """``segment_resource``: the resource's parts, for a segment (its ``aws`` block has them)."""
    aws: dict[str, Any] = {}
    if not _AWS_KEY_SET.isdisjoint(attrs):  # most spans have none of them
        for key, field in _AWS_KEYS.items():
            value = attrs.get(key)
            if value is not None and field not in aws:
                aws[field] = value[0] if isinstance(value, (list, tuple)) and value else value
    if AWS_PARAMS_ATTR in attrs:
        params = _loads(attrs[AWS_PARAMS_ATTR])
        if isinstance(params, dict):
            aws.update(params)
    if segment_resource is not None:
        for key, value in segment_resource.aws.items():
            aws.setdefault(key, value)
        aws["xray"] = SDK
    if aws:
        doc["aws"] = aws


class _ResourceParts:
    """What a segment takes from its resource, worked out once per resource (they never change)."""

    def __init__(self, resource: Mapping[str, AttributeValue]) -> None:
        self.attributes = dict(resource)
        self.aws = _resource_aws(self.attributes)
        self.top = _resource_top(self.attributes)
        names = (self.attributes.get("aws.local.service"), self.attributes.get("service.name"))
        valid = [n for n in names if isinstance(n, str) and n and not n.startswith("unknown_service")]
        self.segment_name = sanitize_name(valid[0]) if valid else None
        """What names a segment whose attributes do not (see :func:`_name`)."""


_RESOURCES: dict[int, tuple[object, _ResourceParts]] = {}


def _resource(span: ReadableSpan) -> _ResourceParts:
    resource = span.resource
    if resource is None:
        return _NO_RESOURCE
    cached = _RESOURCES.get(id(resource))
    if cached is None or cached[0] is not resource:
        if len(_RESOURCES) >= 64:
            _RESOURCES.clear()
        cached = _RESOURCES[id(resource)] = (resource, _ResourceParts(resource.attributes))
    return cached[1]


_PLATFORM_BLOCKS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "aws_ecs": ("ecs", (
        ("container.name", "container"),
        ("container.id", "container_id"),
        ("aws.ecs.task.arn", "task_arn"),
        ("aws.ecs.cluster.arn", "cluster_arn"),
        ("aws.ecs.launchtype", "launch_type"),
    )),
    "aws_ec2": ("ec2", (("host.id", "instance_id"), ("cloud.availability_zone", "availability_zone"))),
    "aws_eks": ("eks", (
        ("k8s.cluster.name", "cluster_name"), ("k8s.pod.name", "pod"), ("container.id", "container_id"),
    )),
}
"""Which resource attributes fill the ``aws`` block of the platform the service runs on."""


def _resource_aws(resource: Mapping[str, AttributeValue]) -> dict[str, Any]:
    aws: dict[str, Any] = {}
    platform = resource.get("cloud.platform")
    block, keys = _PLATFORM_BLOCKS.get(platform, ("", ())) if isinstance(platform, str) else ("", ())
    values = {field: resource[key] for key, field in keys if key in resource}
    if values:
        aws[block] = values
    if "cloud.account.id" in resource:
        aws["account_id"] = resource["cloud.account.id"]
    logs = _log_groups(resource)
    if logs:
        aws["cloudwatch_logs"] = logs
    return aws


def _log_groups(resource: Mapping[str, AttributeValue]) -> list[dict[str, str]]:
    """``aws.log.group.arns`` (name taken from the ARN), else ``aws.log.group.names``."""
    arns = _string_list(resource.get("aws.log.group.arns"))
    if arns:
        return [{"log_group": arn.split(":log-group:", 1)[-1].split(":", 1)[0], "arn": arn}
                for arn in arns]
    return [{"log_group": name} for name in _string_list(resource.get("aws.log.group.names"))]


def _string_list(value: AttributeValue | None) -> list[str]:
    """A list attribute, or a string: ``OTEL_RESOURCE_ATTRIBUTES`` (and Lambda's variables) give
    one, with several values joined by ``&`` (the OpenTelemetry Collector reads them the same way)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split("&") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value if str(item)]
    return []


def _resource_top(resource: Mapping[str, AttributeValue]) -> Document:
    top: Document = {}
    origin = origin_for(resource)
    if origin:
        top["origin"] = origin
    version = resource.get("service.version")
    if version:
        top["service"] = {"version": str(version)}
    return top


def origin_for(resource: Mapping[str, object]) -> str | None:
    """The X-Ray ``origin`` for resource attributes (``cloud.platform``); None on Lambda/unknown."""
    platform = resource.get("cloud.platform")
    if platform == "aws_ecs":
        launch = str(resource.get("aws.ecs.launchtype", "")).lower()
        return {"fargate": "AWS::ECS::Fargate", "ec2": "AWS::ECS::EC2"}.get(
            launch, "AWS::ECS::Container"
        )
    return _ORIGINS.get(platform) if isinstance(platform, str) else None


_NO_RESOURCE = _ResourceParts({})


def _add_annotations_and_metadata(
    doc: Document, attrs: Mapping[str, AttributeValue], annotate_all: bool
) -> None:
    annotations: dict[str, Any] = {}
    route = attrs.get("http.route")
    if isinstance(route, str) and route:  # the segment is named after the service: keep the route
        annotations[ROUTE_ANNOTATION] = route  # searchable (annotation.http_route = "/orders/{id}")
    user = attrs.get("enduser.id")
    if isinstance(user, str) and user:
        doc["user"] = user
    if not _CONSUMED.issuperset(attrs):  # a server span's attributes all became structure
        _add_other_attributes(doc, attrs, annotate_all, annotations)
    if annotations:
        doc["annotations"] = annotations


def _add_other_attributes(
    doc: Document, attrs: Mapping[str, AttributeValue], annotate_all: bool, annotations: dict[str, Any]
) -> None:
    """Indexed (or, with ``annotate_all``, every scalar) attributes as annotations, the rest as
    metadata; ``aws.xray.metadata.<ns>`` as namespace ``<ns>``."""
    indexed = attrs.get(ANNOTATIONS_ATTR) or ()
    indexed_keys = set(indexed) if isinstance(indexed, (list, tuple)) else set()
    default_ns: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for key, value in attrs.items():
        if key in _CONSUMED:
            continue
        if key.startswith(METADATA_PREFIX):
            namespace = key[len(METADATA_PREFIX):]
            if namespace and not namespace.startswith("AWS."):
                metadata[namespace] = _redact(_loads(value))
            continue
        if is_sensitive(key):
            value = REDACTED
        is_scalar = isinstance(value, (str, bool, int, float)) and _finite(value)
        if is_scalar and (key in indexed_keys or annotate_all) and len(annotations) < MAX_ANNOTATIONS:
            annotations[sanitize_key(key)] = value
        else:
            default_ns[key] = list(value) if isinstance(value, tuple) else _json_safe(value)
    if default_ns:
        metadata["default"] = {**default_ns, **metadata.get("default", {})}
    if metadata:
        doc["metadata"] = metadata


def _finite(value: object) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _loads(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value, parse_constant=str)  # NaN and Infinity stay strings
    except ValueError:
        return value


def _redact(value: object) -> object:
    from tracekit._shared.redaction import redact

    return redact(value)


def _json_encoder() -> Callable[[Document], str]:
    """json's C encoder, made once: ``JSONEncoder.encode`` builds a new one for every document,
    which is about 40% of its time for a segment. No circular check: documents are trees."""
    from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]

    fallback = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
    if c_make_encoder is None:  # a Python built without the _json accelerator
        return fallback.encode
    chunks = c_make_encoder(
        None, fallback.default, encode_basestring_ascii, None, ":", ",", False, False, False
    )
    return lambda doc: "".join(chunks(doc, 0))


_json = _json_encoder()


def _fast_encoder() -> Callable[[Document], bytes]:
    """orjson where it is installed: a segment in 0.3 µs instead of 4 (``bench/bench_web.py``:
    JSON was a quarter of the background thread's time), the same bytes for ASCII documents.
    Not on Lambda, where importing it (~2 ms with the modules it loads) costs more than the few
    documents of an invocation save. Chosen at the first document, so importing tracekit stays cheap."""
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        try:
            import orjson
        except ImportError:
            pass
        else:
            return orjson.dumps
    return lambda doc: _json(doc).encode()


_encode: Callable[[Document], bytes] | None = None


def dumps(doc: Document) -> bytes:
    """Compact JSON. What JSON cannot hold becomes a string instead of failing: objects, and NaN
    or infinities (orjson writes those as ``null``; the translator turns the ones in annotations,
    metadata and X-Ray SDK records into strings first)."""
    global _encode
    encode = _encode or _fast_encoder()
    _encode = encode
    try:
        return encode(doc)
    except (TypeError, ValueError):  # orjson's errors are TypeErrors (objects, ints over 64 bits)
        return _json(_sanitize(doc)).encode()  # type: ignore[arg-type]


def _sanitize(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
