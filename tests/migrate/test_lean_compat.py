"""The lean span path (X-Ray only) against the OpenTelemetry SDK path: the contrib Flask, botocore and
requests instrumentations join the trace the same way, and the X-Ray documents and the headers sent
downstream are the same, ids and times aside."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import boto3
import flask
import pytest
import requests
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Status, StatusCode

import tracekit
from support.xray_schema import validate_document
from tracekit._shared import stats
from tracekit.tracing import instrument, propagation, provider
from tracekit.tracing.lean import LeanSpan, LeanTracerProvider
from tracekit.xray.ids import to_xray_trace_id

_VARYING = {"id", "trace_id", "parent_id", "start_time", "end_time", "request_id"}


def _app(moto: str, payments: str) -> flask.Flask:
    app = flask.Flask("orders")

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> Any:
        ddb = boto3.client("dynamodb", endpoint_url=moto, region_name="us-east-1")
        item = ddb.get_item(TableName="orders", Key={"id": {"S": order_id}})["Item"]
        with tracekit.span("charge", annotations={"order": order_id}):
            charged = requests.post(f"{payments}/charge", json={"amount": int(item["amount"]["N"])})
        if charged.status_code != 200:
            raise RuntimeError("declined")
        return {"order": order_id}

    return app


def _run(lean: bool, daemon: Any, moto: str, payments: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Two requests (one failing) through the contrib Flask instrumentation; the documents sent and
    the X-Ray headers the payments service received."""
    daemon.clear()
    payments.requests.clear()
    tracekit.configure(service="orders", exporters=["xray"], daemon_udp=("127.0.0.1", daemon.port),
                       sampler=ALWAYS_ON, instrument=["botocore", "requests"], lean=lean)
    built = provider._state["provider"]
    assert isinstance(built, LeanTracerProvider if lean else TracerProvider)
    app = _app(moto, payments.url)
    FlaskInstrumentor().instrument_app(app)
    try:
        client = app.test_client()
        assert client.get("/orders/o-1").status_code == 200
        assert client.get("/orders/o-2").status_code == 500
        tracekit.force_flush()
        docs = daemon.wait_for(2)
    finally:
        FlaskInstrumentor().uninstrument_app(app)
        instrument.disable()
        provider.shutdown()
    for doc in docs:
        validate_document(doc)
    headers = [r["X-Amzn-Trace-Id"] for r in payments.requests]
    return sorted(docs, key=lambda d: d["http"]["response"]["status"]), headers


def _shape(value: Any) -> Any:
    """The document without what differs from run to run (ids, times, request ids)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in _VARYING}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def _without_ids(header: str) -> str:
    return re.sub(r"(Root|Parent)=[^;]+", r"\1=<id>", header)


@pytest.fixture
def reset() -> Iterator[None]:
    stats.reset()
    yield
    provider.shutdown()


def test_contrib_instrumentations_give_the_same_documents_on_both_paths(
    reset: None, xray_daemon: Any, orders_table: str, payments: Any
) -> None:
    lean_docs, lean_headers = _run(True, xray_daemon, orders_table, payments)
    sdk_docs, sdk_headers = _run(False, xray_daemon, orders_table, payments)
    assert _shape(lean_docs) == _shape(sdk_docs)
    ok, failed = lean_docs
    assert ok["name"] == "orders" and ok["http"]["request"]["url"].endswith("/orders/o-1")
    get_item, charge = ok["subsegments"]
    assert (get_item["name"], get_item["namespace"]) == ("dynamodb", "aws")
    assert get_item["aws"]["operation"] == "GetItem"
    assert charge["annotations"] == {"order": "o-1"}
    (call,) = charge["subsegments"]
    assert call["namespace"] == "remote" and call["http"]["response"]["status"] == 200
    assert failed["fault"] is True and failed["cause"]["exceptions"][0]["type"] == "RuntimeError"
    # The header each path sent downstream names the requests call's subsegment, sampled.
    for headers, docs in ((lean_headers, lean_docs), (sdk_headers, sdk_docs)):
        parsed = [propagation.parse_header(h) for h in headers]
        assert [p is not None and p.sampled for p in parsed] == [True, True]
        sent_ids = {f"{p.parent:016x}" for p in parsed if p is not None}
        assert sent_ids == {d["subsegments"][1]["subsegments"][0]["id"] for d in docs}
    assert [_without_ids(h) for h in lean_headers] == [_without_ids(h) for h in sdk_headers]
    assert _without_ids(lean_headers[0]) == "Root=<id>;Parent=<id>;Sampled=1"


def test_lean_span_keeps_the_sdks_rules(reset: None, xray_daemon: Any) -> None:
    """Attribute validation and limits, status rules, exception events, links, idempotent end."""
    tracekit.configure(exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port), sampler=ALWAYS_ON)
    tracer = provider.get_tracer()
    assert tracer is not None
    with tracer.start_as_current_span("outer") as outer:
        link_to = outer.get_span_context()
    span = tracer.start_span("work", attributes={"a": [1, 2], "bad": object(), "": "no key"})
    assert isinstance(span, LeanSpan) and span.is_recording()
    for i in range(200):
        span.set_attribute(f"k{i}", i)
    assert len(span.attributes) == 128 and "k199" in span.attributes and "a" not in span.attributes
    span.add_link(link_to, {"why": "batch"})
    span.record_exception(ValueError("boom"))
    span.set_status(Status(StatusCode.OK))
    span.set_status(StatusCode.ERROR)  # OK is final, as in the SDK
    span.update_name("renamed")
    span.end()
    span.end()
    span.set_attribute("late", 1)
    assert not span.is_recording() and "late" not in span.attributes
    assert span.name == "renamed" and span.status.is_ok
    assert span.events[0].attributes["exception.type"] == "ValueError"
    assert span.links[0].context == link_to
    tracekit.force_flush()
    docs = xray_daemon.wait_for(2)
    work = next(d for d in docs if d["name"] == "renamed")
    validate_document(work)
    linked = {"trace_id": to_xray_trace_id(link_to.trace_id), "id": f"{link_to.span_id:016x}"}
    assert work["links"] == [linked]


def test_lean_attributes_end_up_as_the_sdks_for_the_same_writes(reset: None) -> None:
    """New, overlapping, invalid and overflowing writes: same keys, values and order as the SDK."""
    writes: list[dict[str, Any]] = [
        {"a": 2, "f": "y"},
        {"d": 1.5, "e": True, "seq": [1, 2]},
        {"": "no key", "bad": object(), "g": None},
        {f"k{i}": i for i in range(130)},
        {"k5": "again", "h": "new"},
    ]
    first = {"a": 1, "b": "x", "c": ("p", "q")}
    tracekit.configure(exporters=["xray"], daemon_udp=("127.0.0.1", 9), sampler=ALWAYS_ON)
    tracer = provider.get_tracer()
    assert tracer is not None
    spans = [
        tracer.start_span("lean", attributes=first),
        TracerProvider().get_tracer("sdk").start_span("sdk", attributes=first),
    ]
    for span in spans:
        for attributes in writes:
            span.set_attributes(attributes)
    lean, sdk = (list(span.attributes.items()) for span in spans)  # type: ignore[attr-defined]
    assert isinstance(spans[0], LeanSpan) and lean == sdk and len(lean) == 128


def test_the_sdk_is_used_where_something_needs_it(
    reset: None, xray_daemon: Any, otlp_receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tracekit._shared.settings import ConfigError

    daemon = ("127.0.0.1", xray_daemon.port)
    cases: list[tuple[dict[str, Any], type]] = [
        ({"exporters": ["xray"]}, LeanTracerProvider),
        ({"exporters": "none"}, LeanTracerProvider),
        ({"exporters": ["xray", "otlp"], "otlp_endpoint": otlp_receiver.traces_url}, TracerProvider),
        ({"exporters": ["xray"], "span_processors": [SimpleSpanProcessor(InMemorySpanExporter())]},
         TracerProvider),
        ({"exporters": ["xray"], "lean": False}, TracerProvider),
    ]
    for kwargs, expected in cases:
        built = tracekit.configure(daemon_udp=daemon, sampler=ALWAYS_ON, **kwargs)
        assert isinstance(built, expected), kwargs
        provider.shutdown()
    monkeypatch.setenv("TRACEKIT_LEAN", "false")
    assert isinstance(tracekit.configure(daemon_udp=daemon, exporters=["xray"]), TracerProvider)
    provider.shutdown()
    monkeypatch.setenv("TRACEKIT_LEAN", "maybe")
    with pytest.raises(ConfigError, match="TRACEKIT_LEAN"):
        tracekit.configure(daemon_udp=daemon, exporters=["xray"])
