"""X-Ray compatible ids (aws-facts.md §2): time-based trace ids, 16-hex span ids, both text forms."""

from __future__ import annotations

import os
import re
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from tracekit.xray.ids import (
    XRayIdGenerator,
    from_span_id,
    from_xray_trace_id,
    synthetic_parent_id,
    to_span_id,
    to_xray_trace_id,
)

XRAY_TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")
TRACE_IDS = st.integers(min_value=1, max_value=2**128 - 1)
SPAN_IDS = st.integers(min_value=1, max_value=2**64 - 1)


def test_trace_id_starts_with_the_epoch_seconds() -> None:
    before = int(time.time())
    trace_id = XRayIdGenerator().generate_trace_id()
    after = int(time.time())
    assert before <= trace_id >> 96 <= after
    assert 0 < trace_id < 2**128


def test_ids_are_random_and_valid() -> None:
    gen = XRayIdGenerator()
    trace_ids = {gen.generate_trace_id() & (2**96 - 1) for _ in range(1000)}
    span_ids = {gen.generate_span_id() for _ in range(1000)}
    assert len(trace_ids) == 1000 and len(span_ids) == 1000
    assert all(0 < s < 2**64 for s in span_ids)


def test_sdk_spans_get_xray_compatible_ids() -> None:
    provider = TracerProvider(id_generator=XRayIdGenerator())
    with provider.get_tracer("t").start_as_current_span("s") as span:
        ctx = span.get_span_context()
    provider.shutdown()
    assert XRAY_TRACE_ID.match(to_xray_trace_id(ctx.trace_id))
    assert abs((ctx.trace_id >> 96) - time.time()) < 5


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork")
def test_forked_workers_do_not_repeat_ids() -> None:
    """Pre-fork servers (gunicorn --preload, multiprocessing) must not share one id sequence.

    A private ``random.Random`` is not reseeded in a forked child (only the module-level one is).
    """
    gen = XRayIdGenerator()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process: never return into pytest
        try:
            os.write(write_end, f"{gen.generate_span_id()} {gen.generate_trace_id()}".encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    child_span, child_trace = (int(x) for x in os.read(read_end, 200).split())
    os.close(read_end)
    os.close(write_end)
    assert child_span != gen.generate_span_id()
    assert child_trace & (2**96 - 1) != gen.generate_trace_id() & (2**96 - 1)


def test_documented_example() -> None:
    value = 0x5759E988BD862E3FE1BE46A994272793
    assert to_xray_trace_id(value) == "1-5759e988-bd862e3fe1be46a994272793"
    assert from_xray_trace_id("1-5759e988-bd862e3fe1be46a994272793") == value
    assert to_span_id(0x53995C3F42CD8AD8) == "53995c3f42cd8ad8"
    assert from_span_id("53995c3f42cd8ad8") == 0x53995C3F42CD8AD8


def test_small_values_are_zero_padded() -> None:
    assert to_xray_trace_id(1) == "1-00000000-000000000000000000000001"
    assert to_span_id(1) == "0000000000000001"


@given(TRACE_IDS)
def test_trace_id_round_trip(value: int) -> None:
    text = to_xray_trace_id(value)
    assert XRAY_TRACE_ID.match(text)
    assert from_xray_trace_id(text) == value


@given(TRACE_IDS)
def test_synthetic_parent_id_is_a_valid_span_id_derived_from_the_trace(trace_id: int) -> None:
    parent = synthetic_parent_id(trace_id)
    assert 0 < parent < 2**64
    assert parent == synthetic_parent_id(trace_id)


@given(SPAN_IDS)
def test_span_id_round_trip(value: int) -> None:
    text = to_span_id(value)
    assert re.fullmatch("[0-9a-f]{16}", text)
    assert from_span_id(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1-00000000-000000000000000000000000",  # all zero: the OTel invalid id
        "2-5759e988-bd862e3fe1be46a994272793",  # unknown version
        "1-5759e988bd862e3fe1be46a994272793",
        "1-5759e988-bd862e3fe1be46a99427279",
        "1-5759e988-bd862e3fe1be46a9942727930",
        "1-5759e98g-bd862e3fe1be46a994272793",
        "1-5759e988-bd862e3f_e1be46a99427279",  # int() would take the underscore
        "1-5759e988-bd862e3fe1be46a99427279 ",
        " 1-5759e988-bd862e3fe1be46a99427279",
        "1_5759e988-bd862e3fe1be46a994272793",
        "1-5759e988_bd862e3fe1be46a994272793",
        "5759e988bd862e3fe1be46a994272793",
    ],
)
def test_invalid_xray_trace_ids(text: str) -> None:
    assert from_xray_trace_id(text) is None


@pytest.mark.parametrize(
    "text",
    ["", "0000000000000000", "53995c3f42cd8ad", "53995c3f42cd8ad80", "53995c3f42cd8adz", "5399_c3f42cd8ad8"],
)
def test_invalid_span_ids(text: str) -> None:
    assert from_span_id(text) is None


@given(st.text(max_size=60))
def test_parsers_never_raise(text: str) -> None:
    assert from_xray_trace_id(text) is None or XRAY_TRACE_ID.match(text.lower())
    assert from_span_id(text) is None or re.fullmatch("[0-9a-fA-F]{16}", text)
