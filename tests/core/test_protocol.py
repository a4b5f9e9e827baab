"""The daemon's UDP framing (aws-facts.md §4): header line, newline, one segment document."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracekit.xray import protocol
from tracekit.xray.protocol import HEADER, MAX_DATAGRAM, MAX_DOCUMENT, ProtocolError, decode, encode

DOC = b'{"name":"svc","id":"70de5b6f19ff9a0a"}'


def test_encode_is_header_newline_document() -> None:
    assert HEADER == b'{"format":"json","version":1}'
    assert encode(DOC) == b'{"format":"json","version":1}\n' + DOC
    assert json.loads(HEADER) == {"format": "json", "version": 1}


def test_size_limits_leave_room_for_the_header() -> None:
    assert MAX_DATAGRAM == 65507
    assert len(encode(b"x" * MAX_DOCUMENT)) == MAX_DATAGRAM


def test_decode_returns_the_document() -> None:
    assert decode(encode(DOC)) == DOC


def test_document_may_contain_newlines() -> None:
    pretty = json.dumps({"name": "svc", "a": [1, 2]}, indent=2).encode()
    assert decode(encode(pretty)) == pretty


@pytest.mark.parametrize(
    "header",
    [
        b'{"version":1,"format":"json"}',
        b'{ "format" : "json", "version" : 1 }',
        b'  {"format":"json","version":1}  ',
        b'{"format":"json","version":1}\r',
    ],
)
def test_equivalent_headers_are_accepted(header: bytes) -> None:
    assert decode(header + b"\n" + DOC) == DOC


def test_missing_newline() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(HEADER + DOC)
    assert info.value.reason == "missing_header"
    assert "missing header or segment" in str(info.value)


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b'{"format":"json","version":2}',
        b'{"format":"xml","version":1}',
        b'{"format":"json","version":"1"}',
        b'{"format":"json"}',
        b'["format","json"]',
        b"not json",
        b"\xff\xfe\x00",
    ],
)
def test_invalid_header(header: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(header + b"\n" + DOC)
    assert info.value.reason == "invalid_header"
    assert "invalid header" in str(info.value) and HEADER.decode() in str(info.value)


def test_long_invalid_header_is_shown_shortened() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(b"x" * 10_000 + b"\n" + DOC)
    assert len(str(info.value)) < 200


def test_deeply_nested_header_is_a_protocol_error_not_a_crash() -> None:
    """Any local process can send this; the receiving loop must get a ProtocolError to count."""
    with pytest.raises(ProtocolError) as info:
        decode(b"[" * 60_000 + b"\n" + DOC)
    assert info.value.reason == "invalid_header"


@pytest.mark.parametrize("body", [b"", b"   ", b"\n\t "])
def test_header_without_a_document(body: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(HEADER + b"\n" + body)
    assert info.value.reason == "empty_segment"


@given(st.binary(max_size=2000).filter(lambda b: b.strip()))
def test_round_trip_any_document(document: bytes) -> None:
    assert decode(encode(document)) == document


@given(st.binary(max_size=300) | st.builds(lambda t: t.encode(), st.text(max_size=300)))
def test_decode_raises_only_protocol_error(datagram: bytes) -> None:
    try:
        body = decode(datagram)
    except ProtocolError as exc:
        assert exc.reason in ("missing_header", "invalid_header", "empty_segment")
    else:
        assert body.strip() and datagram.endswith(body)


def test_reasons_are_counter_friendly() -> None:
    """``reason`` is used as a stats counter suffix: short, lower-case, no dots or spaces."""
    for datagram in (b"no newline", b"bad\n{}", HEADER + b"\n"):
        with pytest.raises(ProtocolError) as info:
            protocol.decode(datagram)
        assert info.value.reason.replace("_", "").isalpha() and info.value.reason.islower()
