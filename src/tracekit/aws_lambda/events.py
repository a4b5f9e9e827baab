"""Recognise what triggered an invocation from the shape of its event.

Each recogniser looks only at a few keys, so that an unknown or malformed event is simply "other":
recognition never raises and never copies the payload. The result carries span attributes (OTel
FaaS, HTTP and messaging conventions, which the X-Ray translator turns into the ``http`` block) and
the trace headers of the messages, which become span links to their producers' traces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tracekit.tracing.propagation import HEADER

MAX_LINKS = 128
"""At most this many producer links per invocation (OTel's default span link limit)."""


class Trigger:
    """What started this invocation: ``source`` (e.g. ``aws:sqs``), span attributes and producers."""

    __slots__ = ("attributes", "default_status", "source", "trace_headers", "trigger")

    def __init__(
        self, source: str = "other", trigger: str = "other", attributes: dict[str, Any] | None = None
    ) -> None:
        self.source = source
        self.trigger = trigger
        """``faas.trigger``: http, pubsub, datasource, timer or other."""
        self.attributes: dict[str, Any] = attributes or {}
        self.trace_headers: list[str] = []
        """``X-Amzn-Trace-Id`` values of the messages in the event (SQS, EventBridge)."""
        self.default_status: int | None = None
        """The status the caller answers when the response has no ``statusCode``: 200 for payload
        format 2.0 (HTTP APIs, Function URLs); REST APIs, ALB and format 1.0 answer 500 instead."""

    @property
    def is_http(self) -> bool:
        return self.trigger == "http"

    @property
    def is_message(self) -> bool:
        return self.trigger == "pubsub"


def recognise(event: object) -> Trigger:
    """The trigger of ``event``; ``Trigger()`` (other) for anything not recognised."""
    if not isinstance(event, Mapping):
        return Trigger()
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], Mapping):
        return _from_records(records)
    for matches, build in _SHAPES:
        if matches(event):
            return build(event)
    return Trigger()


# -- HTTP: API Gateway REST (v1) and HTTP (v2) APIs, Function URLs, ALB --------------------------


def _is_http_v2(event: Mapping[str, Any]) -> bool:
    return event.get("version") == "2.0" and isinstance(_get(event, "requestContext", "http"), Mapping)


def _http_v2(event: Mapping[str, Any]) -> Trigger:
    context = _mapping(event.get("requestContext"))
    http = _mapping(context.get("http"))
    domain = str(context.get("domainName") or "")
    source = "aws:lambda:url" if ".lambda-url." in domain else "aws:apigateway:http"
    attrs = _http_attributes(
        method=http.get("method"),
        host=domain or _header(event, "host"),
        path=http.get("path") or event.get("rawPath"),
        scheme=_header(event, "x-forwarded-proto") or "https",
        user_agent=http.get("userAgent") or _header(event, "user-agent"),
        client_ip=http.get("sourceIp"),
    )
    route = event.get("routeKey")
    if isinstance(route, str) and route != "$default":
        attrs["http.route"] = route.partition(" ")[2] or route
    found = Trigger(source, "http", attrs)
    found.default_status = 200
    return found


def _is_http_v1(event: Mapping[str, Any]) -> bool:
    return "httpMethod" in event and isinstance(event.get("requestContext"), Mapping)


def _http_v1(event: Mapping[str, Any]) -> Trigger:
    context = _mapping(event.get("requestContext"))
    is_alb = isinstance(context.get("elb"), Mapping)
    identity = _mapping(context.get("identity"))
    attrs = _http_attributes(
        method=event.get("httpMethod"),
        host=context.get("domainName") or _header(event, "host"),
        path=context.get("path") or event.get("path"),  # with the stage, as the client asked
        scheme=_header(event, "x-forwarded-proto") or ("http" if is_alb else "https"),
        user_agent=identity.get("userAgent") or _header(event, "user-agent"),
        client_ip=identity.get("sourceIp") or _first_forwarded(_header(event, "x-forwarded-for")),
    )
    resource = event.get("resource")
    if isinstance(resource, str) and resource:
        attrs["http.route"] = resource
    if is_alb:
        return Trigger("aws:elb", "http", attrs)
    # HTTP APIs can send this shape too (payload format 1.0), with a version; REST APIs have none.
    return Trigger("aws:apigateway:http" if "version" in event else "aws:apigateway:rest", "http", attrs)


def _http_attributes(**parts: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if parts["method"]:
        attrs["http.request.method"] = str(parts["method"])
    host, path = parts["host"], parts["path"]
    if host and isinstance(path, str):
        # The query string is left out: it often carries tokens.
        attrs["url.full"] = f"{parts['scheme']}://{host}{path}"
    if parts["user_agent"]:
        attrs["user_agent.original"] = str(parts["user_agent"])
    if parts["client_ip"]:
        attrs["client.address"] = str(parts["client_ip"])
        attrs["x_forwarded_for"] = True
    return attrs


def _header(event: Mapping[str, Any], name: str) -> str | None:
    """A request header, case-insensitively; ALB with multi-value headers sends only lists."""
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field)
        for key, value in headers.items() if isinstance(headers, Mapping) else ():
            if isinstance(key, str) and key.lower() == name:
                return str(value[0] if isinstance(value, list) and value else value)
    return None


def _first_forwarded(value: str | None) -> str | None:
    return value.split(",")[0].strip() or None if value else None


# -- records: SQS, SNS, S3, DynamoDB Streams, Kinesis -------------------------------------------

_RECORD_SOURCES = {
    "aws:sqs": ("pubsub", "aws_sqs"),
    "aws:sns": ("pubsub", "aws_sns"),
    "aws:kinesis": ("pubsub", "aws_kinesis"),
    "aws:s3": ("datasource", None),
    "aws:dynamodb": ("datasource", None),
}


def _from_records(records: list[Any]) -> Trigger:
    first = records[0]
    source = first.get("eventSource") or first.get("EventSource")
    if source not in _RECORD_SOURCES:
        return Trigger()
    trigger, system = _RECORD_SOURCES[source]
    attrs: dict[str, Any] = {"messaging.batch.message_count": len(records)}
    if system:
        attrs["messaging.system"] = system
    arn = _source_arn(first, source)
    if arn:
        attrs["aws.lambda.event_source_arn"] = arn
        if system:
            attrs["messaging.destination.name"] = _resource_name(arn)
    found = Trigger(source, trigger, attrs)
    if source == "aws:sqs":
        found.trace_headers = _sqs_headers(records)
    return found


def _source_arn(record: Mapping[str, Any], source: str) -> str | None:
    if source == "aws:sns":
        arn = _get(record, "Sns", "TopicArn")
    elif source == "aws:s3":
        bucket = _get(record, "s3", "bucket", "name")
        arn = f"arn:aws:s3:::{bucket}" if bucket else None
    else:
        arn = record.get("eventSourceARN")
    return arn if isinstance(arn, str) and arn else None


def _resource_name(arn: str) -> str:
    """``orders`` from ``arn:aws:sqs:...:orders`` or ``arn:aws:kinesis:...:stream/orders[/consumer/...]``."""
    resource = arn.split(":", 5)[-1]
    return resource.split("/")[1] if resource.startswith("stream/") else resource


def _sqs_headers(records: list[Any]) -> list[str]:
    headers: list[str] = []
    for record in records:
        value = _get(record, "attributes", "AWSTraceHeader")
        if isinstance(value, str) and value not in headers:
            headers.append(value)
            if len(headers) >= MAX_LINKS:
                break
    return headers


# -- EventBridge and Step Functions ---------------------------------------------------------------


def _is_eventbridge(event: Mapping[str, Any]) -> bool:
    return "detail-type" in event and "source" in event and "detail" in event


def _eventbridge(event: Mapping[str, Any]) -> Trigger:
    scheduled = event.get("source") == "aws.events" or event.get("detail-type") == "Scheduled Event"
    attrs: dict[str, Any] = {
        "aws.eventbridge.source": str(event.get("source")),
        "aws.eventbridge.detail_type": str(event.get("detail-type")),
    }
    found = Trigger("aws:events", "timer" if scheduled else "pubsub", attrs)
    # EventBridge does not put the PutEvents trace header into the delivered event; producers that
    # want a link put one in ``detail`` under the header's name.
    header = _header({"headers": event.get("detail")}, HEADER.lower())
    if header:
        found.trace_headers.append(header)
    return found


def _is_step_functions(event: Mapping[str, Any]) -> bool:
    execution = _get(event, "Execution", "Id")
    return isinstance(execution, str) and execution.startswith("arn:aws:states:")


def _step_functions(event: Mapping[str, Any]) -> Trigger:
    attrs = {"aws.step_functions.execution_arn": str(_get(event, "Execution", "Id"))}
    machine = _get(event, "StateMachine", "Id")
    if isinstance(machine, str):
        attrs["aws.step_functions.state_machine_arn"] = machine
    return Trigger("aws:states", "other", attrs)


_SHAPES: tuple[tuple[Callable[[Mapping[str, Any]], bool], Callable[[Mapping[str, Any]], Trigger]], ...] = (
    (_is_http_v2, _http_v2),
    (_is_http_v1, _http_v1),
    (_is_eventbridge, _eventbridge),
    (_is_step_functions, _step_functions),
)


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
