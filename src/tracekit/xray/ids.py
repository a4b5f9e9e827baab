"""X-Ray compatible ids: OTel trace ids whose first 32 bits are the epoch seconds.

X-Ray writes a trace id as ``1-<8 hex epoch>-<24 hex random>``; OpenTelemetry writes the same 128 bits
as 32 hex digits. Generating time-based ids keeps both backends happy with one id.
"""

from __future__ import annotations

import os
import random
import time

_RANDOM = random.Random()
os.register_at_fork(after_in_child=_RANDOM.seed)  # forked workers must not repeat ids


class XRayIdGenerator:
    """Trace ids with the creation time in their first 32 bits; random 64-bit span ids.

    It has the methods of the SDK's ``IdGenerator`` without subclassing it, so that the lean span
    path (:mod:`tracekit.tracing.lean`) never imports the SDK."""

    def is_trace_id_random(self) -> bool:
        """The first 32 bits are a time: W3C's "random trace id" flag must stay off."""
        return False

    def generate_span_id(self) -> int:
        span_id = _RANDOM.getrandbits(64)
        while not span_id:  # 0 is the OTel "invalid" id
            span_id = _RANDOM.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        return (int(time.time()) << 96) | _RANDOM.getrandbits(96)


def synthetic_parent_id(trace_id: int) -> int:
    """The stand-in parent span id for a header that carries a Root but no Parent.

    Derived from the trace id, so the translator can recognise it without any shared state and
    no marker travels downstream.
    """
    return ((trace_id & 0xFFFFFFFFFFFFFFFF) ^ 0x746B726F6F74) or 1


_LOW_96 = (1 << 96) - 1


def to_xray_trace_id(trace_id: int) -> str:
    """``0x5759e988bd862e3fe1be46a994272793`` -> ``1-5759e988-bd862e3fe1be46a994272793``."""
    return "1-%08x-%024x" % (trace_id >> 96, trace_id & _LOW_96)  # noqa: UP031  # faster here


def from_xray_trace_id(xray_id: str) -> int | None:
    """Parse ``1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy``; ``None`` when it is not one."""
    if len(xray_id) != 35 or not xray_id.startswith("1-") or xray_id[10] != "-":
        return None
    hexid = xray_id[2:10] + xray_id[11:]
    if not _is_hex(hexid):
        return None
    value = int(hexid, 16)
    return value or None


def to_span_id(span_id: int) -> str:
    """An OTel span id as X-Ray's 16 lower-case hex digits."""
    return "%016x" % span_id  # noqa: UP031  # a third faster than an f-string, on every span


def from_span_id(text: str) -> int | None:
    """Parse 16 hex digits; ``None`` when malformed or zero."""
    if len(text) != 16 or not _is_hex(text):
        return None
    value = int(text, 16)
    return value or None


_HEX = frozenset("0123456789abcdefABCDEF")


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in _HEX for c in text)
