"""The X-Ray daemon's UDP protocol: a JSON header line, then one segment document.

Shared by the application-side emitter (encode) and the sidecar (decode).
"""

from __future__ import annotations

HEADER = b'{"format":"json","version":1}'
MAX_DATAGRAM = 65507
"""Largest UDP payload over IPv4; the header and newline count against it."""
MAX_DOCUMENT = MAX_DATAGRAM - len(HEADER) - 1


class ProtocolError(ValueError):
    """A datagram that is not ``header + newline + document``; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def encode(document: bytes) -> bytes:
    """Frame one serialised segment document as a daemon datagram."""
    return HEADER + b"\n" + document


def decode(datagram: bytes) -> bytes:
    """Return the document from a datagram, or raise :class:`ProtocolError` saying what is wrong."""
    header, newline, body = datagram.partition(b"\n")
    if not newline:
        raise ProtocolError("missing_header", "missing header or segment: no newline in datagram")
    if header.strip() != HEADER and not _same_header(header):
        shown = header[:64].decode("utf-8", "replace")
        raise ProtocolError("invalid_header", f"invalid header {shown!r}: expected {HEADER.decode()}")
    if not body.strip():
        raise ProtocolError("empty_segment", "header without a segment document")
    return body


def _same_header(header: bytes) -> bool:
    """Accept the header with other spacing or key order, as the daemon does (it parses the JSON)."""
    import json

    if len(header) > 256:
        return False
    try:
        value = json.loads(header)
    except (ValueError, RecursionError):
        return False
    if not isinstance(value, dict) or value.get("format") != "json":
        return False
    version = value.get("version")
    return type(version) is int and version == 1  # true and 1.0 equal 1 in Python, not on the wire
