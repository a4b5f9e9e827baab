"""The segment-document validator: it accepts what the real aws-xray-sdk emits and rejects bad documents."""

from __future__ import annotations

import copy
import json
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter
from aws_xray_sdk.core.models import http
from aws_xray_sdk.core.models.entity import Entity
from aws_xray_sdk.core.recorder import AWSXRayRecorder

from support.xray_schema import document_errors, validate_document

MINIMAL: dict[str, Any] = {
    "name": "example.com",
    "id": "70de5b6f19ff9a0a",
    "start_time": 1.478293361271e9,
    "trace_id": "1-581cf771-a006649127e371903a2de979",
    "end_time": 1.478293361449e9,
}


class _Capture(UDPEmitter):  # type: ignore[misc]
    """An emitter that keeps what the SDK would send to the daemon."""

    def __init__(self) -> None:
        super().__init__()
        self.documents: list[dict[str, Any]] = []

    def send_entity(self, entity: Entity) -> None:
        self.documents.append(json.loads(entity.serialize()))


def _sdk_documents() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Documents from the real X-Ray SDK (streamed subsegments, full segment) and an in-progress one."""
    emitter = _Capture()
    recorder = AWSXRayRecorder()
    recorder.configure(emitter=emitter, sampling=False, context_missing="LOG_ERROR", streaming_threshold=2)
    segment = recorder.begin_segment("checkout-api")
    segment.put_http_meta(http.METHOD, "POST")
    segment.put_http_meta(http.URL, "https://shop.example.com/cart?id=1")
    segment.put_http_meta(http.USER_AGENT, "curl/8")
    segment.put_http_meta(http.STATUS, 429)
    segment.put_annotation("customer_id", 1234)
    segment.put_annotation("premium", True)
    segment.put_metadata("cart", {"items": [1, 2], "total": 9.5}, "orders")
    segment.set_user("alice")
    in_progress = json.loads(segment.serialize())
    with recorder.in_subsegment("dynamodb", namespace="aws") as sub:
        sub.set_aws({"operation": "GetItem", "region": "us-east-1", "table_name": "carts"})
        sub.put_http_meta(http.STATUS, 200)
    for name in ("auth-service", "pricing"):
        with recorder.in_subsegment(name, namespace="remote") as sub:
            sub.put_annotation("attempt", 1)
            with recorder.in_subsegment("serialize"):
                pass
            try:
                raise KeyError("price")
            except KeyError as exc:
                sub.add_exception(exc, traceback.extract_stack())
    with recorder.in_subsegment("SELECT carts") as sub:
        sub.set_sql({"url": "postgresql://db/shop", "database_type": "PostgreSQL"})
    recorder.end_segment()
    return emitter.documents, in_progress


def test_real_xray_sdk_documents_are_valid() -> None:
    documents, in_progress = _sdk_documents()
    kinds = {d.get("type", "segment") for d in documents}
    assert kinds == {"segment", "subsegment"}  # both a streamed subsegment and a segment
    for doc in [*documents, in_progress]:
        validate_document(doc)
    assert in_progress.get("in_progress") is True and "end_time" not in in_progress


def test_documented_minimal_segment_is_valid() -> None:
    validate_document(MINIMAL)
    validate_document({**MINIMAL, "in_progress": False})


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(key)


def _set(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.update(fields)


def _independent(doc: dict[str, Any]) -> None:
    doc.update(type="subsegment")


def _not_in_progress_but_open(doc: dict[str, Any]) -> None:
    doc.pop("end_time")
    doc.update(in_progress=False)


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no end_time nor in_progress", _without("end_time"), "'end_time' is a required property"),
    ("in_progress false, no end", _not_in_progress_but_open, "'end_time' is a required property"),
    ("end_time while in progress", _set(in_progress=True), "no end_time on an in-progress"),
    ("no name", _without("name"), "'name' is a required property"),
    ("no trace_id", _without("trace_id"), "'trace_id' is a required property"),
    ("upper-case id", _set(id="70DE5B6F19FF9A0A"), "$.id"),
    ("short id", _set(id="70de5b6f19ff9a0"), "16 lower-case hex digits"),
    ("bad trace id", _set(trace_id="1-581cf771-a006649127e371903a2de97"), "$.trace_id"),
    ("trace id version", _set(trace_id="2-581cf771-a006649127e371903a2de979"), "$.trace_id"),
    ("otel trace id", _set(trace_id="581cf771a006649127e371903a2de979"), "$.trace_id"),
    ("start in ms", _set(start_time=1.478293361271e12), "ms or ns"),
    ("start as string", _set(start_time="1478293361.271"), "is not of type 'number'"),
    ("annotation key", _set(annotations={"user.id": "1"}), "annotation keys"),
    ("annotation key space", _set(annotations={"user id": "1"}), "annotation keys"),
    ("annotation null", _set(annotations={"k": None}), "annotation values"),
    ("annotation object", _set(annotations={"k": {"a": 1}}), "annotation values"),
    ("annotation list", _set(annotations={"k": [1]}), "annotation values"),
    ("annotation too long", _set(annotations={"k": "x" * 1001}), "annotation values"),
    ("51 annotations", _set(annotations={f"k{i}": i for i in range(51)}), "at most 50"),
    ("metadata not object", _set(metadata={"default": 3}), "namespace -> object"),
    ("reserved metadata", _set(metadata={"AWS.foo": {}}), "reserved"),
    ("unknown field", _set(annotation={"k": 1}), "'annotation' was unexpected"),
    ("namespace on segment", _set(namespace="remote"), "'namespace' was unexpected"),
    ("segment name chars", _set(name="a?b"), "$.name"),
    ("long name", _set(name="x" * 201), "$.name"),
    ("empty name", _set(name=""), "$.name"),
    ("origin", _set(origin="AWS::Lambda::Function"), "$.origin"),
    ("fault as string", _set(fault="true"), "$.fault"),
    ("status as string", _set(http={"response": {"status": "200"}}), "$.http.response.status"),
    ("http unknown key", _set(http={"request": {"verb": "GET"}}), "'verb' was unexpected"),
    ("x_forwarded_for", _set(http={"request": {"x_forwarded_for": "1.2.3.4"}}), "x_forwarded_for"),
    ("cause id", _set(cause="not-an-id"), "$.cause"),
    ("cause line", _set(cause={"exceptions": [{"stack": [{"line": "9"}]}]}), "line"),
    ("cause extra", _set(cause={"exception": []}), "'exception' was unexpected"),
    ("independent without parent", _independent, "'parent_id' is a required property"),
    ("type segment", _set(type="segment"), "$.type"),
    (
        "nested without end",
        _set(subsegments=[{"name": "s", "id": "1111111111111111", "start_time": 1.5e9}]),
        "$.subsegments[0]",
    ),
    (
        "nested bad namespace",
        _set(
            subsegments=[
                {"name": "s", "id": "1111111111111111", "start_time": 1.5e9, "end_time": 1.5e9}
                | {"namespace": "internal"}
            ]
        ),
        "$.subsegments[0].namespace",
    ),
    ("end before start", _set(end_time=1.478293361e9), "before start_time"),
    (
        "duplicate ids",
        _set(subsegments=[{**MINIMAL, "name": "s"} | {"trace_id": MINIMAL["trace_id"]}]),
        "appears twice",
    ),
    (
        "nested other trace",
        _set(
            subsegments=[
                {
                    "name": "s",
                    "id": "1111111111111111",
                    "start_time": 1.5e9,
                    "end_time": 1.5e9,
                    "trace_id": "1-581cf771-000000000000000000000000",
                }
            ]
        ),
        "differs from the document's",
    ),
    ("over 64 KB", _set(metadata={"default": {"blob": "x" * 70_000}}), "more than 65536"),
]


@pytest.mark.parametrize(("mutate", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_documents_are_rejected_with_a_clear_message(
    mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    doc = copy.deepcopy(MINIMAL)
    mutate(doc)
    with pytest.raises(AssertionError) as info:
        validate_document(doc)
    assert expected in str(info.value)


def test_independent_subsegment_and_in_progress_forms() -> None:
    sub = {
        **MINIMAL,
        "name": "DynamoDB.GetItem",
        "type": "subsegment",
        "parent_id": "1111111111111111",
        "namespace": "aws",
        "aws": {"operation": "GetItem", "retries": 0, "anything_else": [1]},
    }
    validate_document(sub)
    progress = {k: v for k, v in MINIMAL.items() if k != "end_time"} | {"in_progress": True}
    validate_document(progress)
    assert "$: [] is not of type 'object'" in document_errors([])


def test_errors_are_listed_together() -> None:
    problems = document_errors({**MINIMAL, "id": "x", "fault": 1})
    assert len(problems) == 2 and problems[0].startswith("$.fault")
