"""Span -> X-Ray document translation rules (aws-facts.md §3, §7) and the 64 KB split."""

from __future__ import annotations

import json
import traceback
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from support.xray_schema import validate_document
from tracekit._shared import stats as _stats
from tracekit.xray import protocol
from tracekit.xray.documents import split_document
from tracekit.xray.segments import parse_python_stack, to_document

TRACE = 0x5759E988BD862E3FE1BE46A994272793
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSET = Status(StatusCode.UNSET)


def ctx(span_id: int, remote: bool = False, state: TraceState | None = None) -> SpanContext:
    return SpanContext(TRACE, span_id, remote, SAMPLED, state or TraceState())


def make_span(
    kind: SpanKind = SpanKind.INTERNAL,
    parent: SpanContext | None = None,
    attributes: dict[str, Any] | None = None,
    resource: dict[str, Any] | None = None,
    events: tuple[Event, ...] = (),
    status: Status = UNSET,
    name: str = "op",
) -> ReadableSpan:
    return ReadableSpan(
        name=name,
        context=ctx(0xABC),
        parent=parent,
        resource=Resource.create({"service.name": "orders", **(resource or {})}),
        attributes=attributes or {},
        events=events,
        kind=kind,
        status=status,
        start_time=1_700_000_000_000_000_000,
        end_time=1_700_000_000_250_000_000,
    )


def doc_of(span: ReadableSpan, **kw: Any) -> dict[str, Any]:
    doc = to_document(span, **kw)
    validate_document(json.loads(json.dumps(doc)))
    return doc


def test_server_span_is_a_segment_with_http_and_resource() -> None:
    span = make_span(
        SpanKind.SERVER,
        parent=ctx(0x1234, remote=True),
        attributes={
            "http.request.method": "GET",
            "url.full": "http://shop/orders/42",
            "user_agent.original": "curl/8",
            "client.address": "10.0.0.1",
            "http.response.status_code": 200,
            "http.route": "/orders/<id>",
        },
        resource={"cloud.platform": "aws_ecs", "aws.ecs.launchtype": "fargate",
                  "service.version": "1.2"},
    )
    doc = doc_of(span)
    assert doc["name"] == "orders"
    assert doc["id"] == "0000000000000abc"
    assert doc["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert doc["parent_id"] == "0000000000001234"
    assert doc["start_time"] == pytest.approx(1_700_000_000.0)
    assert doc["end_time"] == pytest.approx(1_700_000_000.25)
    assert doc["origin"] == "AWS::ECS::Fargate"
    assert doc["service"] == {"version": "1.2"}
    assert doc["http"] == {
        "request": {"method": "GET", "url": "http://shop/orders/42", "user_agent": "curl/8",
                    "client_ip": "10.0.0.1"},
        "response": {"status": 200},
    }
    assert "error" not in doc and "fault" not in doc
    assert doc["aws"]["xray"]["sdk"].startswith("tracekit")


def test_root_only_header_parent_is_not_a_parent_id() -> None:
    from tracekit.xray.ids import synthetic_parent_id

    span = make_span(SpanKind.SERVER, parent=ctx(synthetic_parent_id(TRACE), remote=True))
    assert "parent_id" not in doc_of(span)


def test_lambda_style_subsegment_of_remote_parent() -> None:
    doc = doc_of(make_span(parent=ctx(0x77, remote=True)))
    assert doc["type"] == "subsegment"
    assert doc["parent_id"] == "0000000000000077"
    assert doc["name"] == "op"


@pytest.mark.parametrize(
    ("attributes", "name", "namespace"),
    [
        ({"rpc.system": "aws-api", "rpc.service": "DynamoDB", "rpc.method": "GetItem"},
         "DynamoDB", "aws"),
        ({"http.request.method": "GET", "server.address": "api.example.com"}, "api.example.com",
         "remote"),
        ({"peer.service": "payments"}, "payments", "remote"),
        ({"db.name": "shop", "server.address": "db1"}, "shop@db1", "remote"),
    ],
)
def test_client_subsegment_name_and_namespace(
    attributes: dict[str, Any], name: str, namespace: str
) -> None:
    doc = doc_of(make_span(SpanKind.CLIENT, parent=ctx(1), attributes=attributes))
    assert (doc["name"], doc["namespace"]) == (name, namespace)
    if namespace == "aws":
        assert doc["aws"]["operation"] == "GetItem"


@pytest.mark.parametrize(
    ("status", "flags"),
    [(200, set()), (404, {"error"}), (429, {"error", "throttle"}), (503, {"fault"})],
)
def test_status_code_mapping(status: int, flags: set[str]) -> None:
    doc = doc_of(make_span(SpanKind.SERVER, attributes={"http.status_code": status}))
    assert {k for k in ("error", "throttle", "fault") if doc.get(k)} == flags


def test_error_status_without_code_is_fault() -> None:
    doc = doc_of(make_span(status=Status(StatusCode.ERROR, "boom")))
    assert doc["fault"] is True


def test_exception_event_becomes_cause_with_python_stack() -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        stack = "".join(traceback.format_exception(exc))
    event = Event("exception", {"exception.type": "KeyError", "exception.message": "'missing'",
                                "exception.stacktrace": stack})
    doc = doc_of(make_span(SpanKind.CLIENT, parent=ctx(1), events=(event,)))
    (exc,) = doc["cause"]["exceptions"]
    assert exc["type"] == "KeyError" and exc["remote"] is True
    assert exc["stack"][0]["label"] == "test_exception_event_becomes_cause_with_python_stack"
    assert exc["stack"][0]["path"].endswith("test_segments.py")
    assert doc["fault"] is True


def test_python_stack_is_innermost_first_and_capped() -> None:
    text = "Traceback (most recent call last):\n" + "".join(
        f'  File "/app/m{i}.py", line {i + 1}, in f{i}\n    code\n' for i in range(60)
    ) + "ValueError: x\n"
    frames, cut = parse_python_stack(text)
    assert frames[0] == {"path": "/app/m59.py", "line": 60, "label": "f59"}
    assert len(frames) == 50 and cut == 10


def test_annotations_metadata_and_key_sanitising() -> None:
    attributes = {
        "aws.xray.annotations": ("order-id", "vip"),
        "order-id": "A-1",
        "vip": True,
        "note": "not indexed",
        "tags": ("a", "b"),
        "aws.xray.metadata.billing": json.dumps({"total": 9.5}),
        "client_secret": "s3cr3t",
        "enduser.id": "alice",
    }
    doc = doc_of(make_span(attributes=attributes))
    assert doc["annotations"] == {"order_id": "A-1", "vip": True}
    assert doc["metadata"]["default"] == {"note": "not indexed", "tags": ["a", "b"],
                                          "client_secret": "[REDACTED]"}
    assert doc["metadata"]["billing"] == {"total": 9.5}
    assert doc["user"] == "alice"
    all_doc = doc_of(make_span(attributes={"note": "x", "n": 1.5}), annotate_all=True)
    assert all_doc["annotations"] == {"note": "x", "n": 1.5}


def test_names_are_sanitised_and_capped() -> None:
    doc = doc_of(make_span(parent=ctx(1), name="GET /a?b=1;*()!$~^<>" + "x" * 300))
    assert len(doc["name"]) == 200
    assert not set("?;*()!$~^<>") & set(doc["name"])


def _big_tree(children: int, metadata_bytes: int) -> dict[str, Any]:
    return {
        "name": "root", "id": "00000000000000aa", "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "start_time": 1.7e9, "end_time": 1.7e9 + 1,
        "subsegments": [
            {"name": f"c{i}", "id": f"{i + 1:016x}", "start_time": 1.7e9, "end_time": 1.7e9 + 1,
             "metadata": {"default": {"blob": "x" * metadata_bytes}}}
            for i in range(children)
        ],
    }


def test_oversized_document_is_split_into_subsegment_documents() -> None:
    _stats.reset()
    parts = [json.loads(p) for p in split_document(_big_tree(8, 20_000))]
    assert all(len(json.dumps(p)) <= protocol.MAX_DOCUMENT for p in parts)
    assert parts[0]["id"] == "00000000000000aa" and "subsegments" not in parts[0]
    subs = parts[1:]
    assert len(subs) == 8
    for sub in subs:
        validate_document(sub)
        assert sub["type"] == "subsegment" and sub["parent_id"] == "00000000000000aa"
        assert sub["trace_id"] == parts[0]["trace_id"]
    assert _stats.stats()["xray.documents_split"] == 1


def test_single_span_over_limit_is_trimmed_metadata_first(caplog: Any) -> None:
    _stats.reset()
    tree = _big_tree(1, 100_000)
    (payload,) = split_document(tree["subsegments"][0] | {"trace_id": tree["trace_id"],
                                                          "type": "subsegment", "parent_id": "a" * 16})
    doc = json.loads(payload)
    assert "metadata" not in doc and doc["name"] == "c0"
    assert _stats.stats()["xray.documents_trimmed"] == 1
    assert "dropped its metadata" in caplog.text


def test_nan_and_objects_do_not_break_serialisation() -> None:
    doc = doc_of(make_span(attributes={"ratio": float("nan")}))
    doc["metadata"]["default"]["obj"] = object()
    (payload,) = split_document(doc)
    assert json.loads(payload)["metadata"]["default"]["ratio"] == "nan"


@pytest.mark.parametrize("kind", [SpanKind.CONSUMER, SpanKind.INTERNAL, SpanKind.CLIENT])
def test_first_span_under_a_root_only_header_is_a_segment(kind: SpanKind) -> None:
    """An SQS consumer or a job under ``Root=...`` alone has no parent to be a subsegment of."""
    from tracekit.xray.ids import synthetic_parent_id

    doc = doc_of(make_span(kind, parent=ctx(synthetic_parent_id(TRACE), remote=True)))
    assert doc["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert "parent_id" not in doc and "type" not in doc and "namespace" not in doc
    assert doc["name"] == "orders"


def test_server_url_from_parts_of_both_semconv_generations() -> None:
    old = {"http.method": "GET", "http.scheme": "http", "http.host": "shop:8080",
           "http.target": "/a?b=1", "http.client_ip": "10.0.0.9"}
    new = {"http.request.method": "GET", "url.scheme": "https", "server.address": "shop",
           "server.port": 8443, "url.path": "/a", "url.query": "b=1"}
    old_req = doc_of(make_span(SpanKind.SERVER, attributes=old))["http"]["request"]
    assert old_req["url"] == "http://shop:8080/a?b=1"
    assert (old_req["client_ip"], old_req["x_forwarded_for"]) == ("10.0.0.9", True)
    new_req = doc_of(make_span(SpanKind.SERVER, attributes=new))["http"]["request"]
    assert new_req["url"] == "https://shop:8443/a?b=1"
    no_host_header = {"http.method": "GET", "http.scheme": "http", "http.server_name": "shop",
                      "net.host.port": 8000, "http.target": "/a"}
    assert doc_of(make_span(SpanKind.SERVER, attributes=no_host_header))["http"]["request"][
        "url"] == "http://shop:8000/a"
    default_port = {**new, "server.port": 443}
    assert doc_of(make_span(SpanKind.SERVER, attributes=default_port))["http"]["request"][
        "url"] == "https://shop/a?b=1"


def test_log_groups_from_the_resource_become_cloudwatch_logs() -> None:
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/ecs/shop:*"
    by_arn = doc_of(make_span(SpanKind.SERVER, resource={"aws.log.group.arns": (arn,),
                                                          "aws.log.group.names": ("ignored",)}))
    assert by_arn["aws"]["cloudwatch_logs"] == [{"log_group": "/aws/ecs/shop", "arn": arn}]
    by_name = doc_of(make_span(SpanKind.SERVER, resource={"aws.log.group.names": ("/app/a",)}))
    assert by_name["aws"]["cloudwatch_logs"] == [{"log_group": "/app/a"}]
    child = doc_of(make_span(parent=ctx(1), resource={"aws.log.group.names": ("/app/a",)}))
    assert "aws" not in child


@pytest.mark.parametrize(
    ("resource", "block", "expected"),
    [
        ({"cloud.platform": "aws_ecs", "container.id": "c1", "aws.ecs.task.arn": "arn:t"}, "ecs",
         {"container_id": "c1", "task_arn": "arn:t"}),
        ({"cloud.platform": "aws_eks", "container.id": "c1", "k8s.cluster.name": "prod",
          "k8s.pod.name": "shop-1"}, "eks", {"container_id": "c1", "cluster_name": "prod",
                                             "pod": "shop-1"}),
        ({"cloud.platform": "aws_ec2", "host.id": "i-1", "container.id": "c1"}, "ec2",
         {"instance_id": "i-1"}),
    ],
)
def test_platform_block_follows_cloud_platform(
    resource: dict[str, Any], block: str, expected: dict[str, str]
) -> None:
    """``container.id`` alone (Docker, EKS) must not make a service look like it runs on ECS."""
    aws = doc_of(make_span(SpanKind.SERVER, resource=resource))["aws"]
    assert aws[block] == expected
    assert {"ecs", "eks", "ec2"} & set(aws) == {block}


def test_route_template_is_an_annotation_while_the_segment_carries_the_service_name() -> None:
    span = make_span(
        SpanKind.SERVER, name="/orders/{id}",
        attributes={"http.request.method": "GET", "http.route": "/orders/{id}", "url.path": "/orders/7"},
    )
    doc = doc_of(span)
    assert doc["name"] == "orders"
    assert doc["annotations"] == {"http_route": "/orders/{id}"}  # filter: annotation.http_route = "..."
    assert "http.route" not in doc.get("metadata", {}).get("default", {})


def test_log_groups_set_as_strings_in_otel_resource_attributes_fill_cloudwatch_logs(
    monkeypatch: pytest.MonkeyPatch, xray_daemon: Any
) -> None:
    """``OTEL_RESOURCE_ATTRIBUTES`` has no lists: several groups are joined with ``&`` (as for ADOT)."""
    import tracekit
    from tracekit.tracing import provider

    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/ecs/shop:*"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "aws.log.group.names=/aws/lambda/orders&app-logs")
    tracekit.configure(service="orders", exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=ALWAYS_ON)
    try:
        with tracekit.span("work"):
            pass
        tracekit.force_flush()
        doc = xray_daemon.wait_for(1)[0]
    finally:
        provider.shutdown()
    validate_document(doc)
    assert doc["aws"]["cloudwatch_logs"] == [{"log_group": "/aws/lambda/orders"}, {"log_group": "app-logs"}]
    by_arn = doc_of(make_span(SpanKind.SERVER, resource={"aws.log.group.arns": arn}))
    assert by_arn["aws"]["cloudwatch_logs"] == [{"log_group": "/aws/ecs/shop", "arn": arn}]
