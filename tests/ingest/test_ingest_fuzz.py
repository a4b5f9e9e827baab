"""Fuzzed input never breaks the receivers: every body gets an OTLP answer, every line a verdict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_helpers import ListShipper, ListSink

from tracekit.metrics.emf import validate
from tracekit.sidecar.emf_receiver import EmfReceiver
from tracekit.sidecar.otlp_receiver import OtlpHttpReceiver

FUZZ = settings(max_examples=150, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
any_value = st.recursive(
    st.builds(lambda v: {"stringValue": v}, st.text(max_size=20))
    | st.builds(lambda v: {"intValue": str(v)}, st.integers(-(2**63), 2**63 - 1))
    | st.builds(lambda v: {"doubleValue": v}, st.floats(allow_nan=False, allow_infinity=False))
    | st.builds(lambda v: {"boolValue": v}, st.booleans()),
    lambda inner: st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=3))
    | st.builds(
        lambda kv: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kv.items()]}},
        st.dictionaries(st.text(max_size=5), inner, max_size=3),
    ),
    max_leaves=10,
)
hex_id = st.binary(min_size=8, max_size=8).map(bytes.hex)


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpHttpReceiver]:
    """Built once (hypothesis calls each test many times); ``handle`` needs no running server."""
    receiver = OtlpHttpReceiver("127.0.0.1", 0, sink=ListSink())
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def emf() -> Iterator[EmfReceiver]:
    receiver = EmfReceiver("127.0.0.1", 0, shipper=ListShipper())
    yield receiver
    receiver.stop()


def span_json(attrs: dict[str, Any], span_id: str, kind: int, status: int) -> bytes:
    span = {
        "traceId": "5759e988bd862e3fe1be46a994272793", "spanId": span_id, "name": "fuzz",
        "kind": kind, "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
        "attributes": [{"key": k, "value": v} for k, v in attrs.items()], "status": {"code": status},
    }  # fmt: skip
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


@FUZZ
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(["application/x-protobuf", "application/json", "text/plain", ""]),
    encoding=st.sampled_from(["", "gzip", "deflate", "identity", "zstd"]),
)
def test_any_body_gets_an_otlp_answer(
    otlp: OtlpHttpReceiver, body: bytes, content_type: str, encoding: str
) -> None:
    reply = otlp.handle(body, content_type, encoding)
    assert reply.status in (200, 400, 413, 415)


@FUZZ
@given(
    attrs=st.dictionaries(st.text(max_size=12), any_value, max_size=6),
    span_id=hex_id,
    kind=st.integers(0, 6),
    status=st.integers(0, 3),
)
def test_any_attributes_translate_to_json_documents(
    otlp: OtlpHttpReceiver, attrs: dict[str, Any], span_id: str, kind: int, status: int
) -> None:
    sink = otlp.sink
    assert isinstance(sink, ListSink)
    sink.documents.clear()
    reply = otlp.handle(span_json(attrs, span_id, kind, status), "application/json", "")
    assert reply.status == 200
    if span_id != "0" * 16:
        (doc,) = sink.docs()
        assert doc["id"] == span_id


@FUZZ
@given(line=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_only_valid_emf_is_shipped(emf: EmfReceiver, line: bytes) -> None:
    shipper = emf.shipper
    assert isinstance(shipper, ListShipper)
    shipper.lines.clear()
    shipped = emf.accept_line(line, "fuzz")
    assert shipped == bool(shipper.lines)
    for doc in shipper.docs():
        assert validate(doc) == []
