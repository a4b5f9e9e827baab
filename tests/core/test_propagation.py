"""``X-Amzn-Trace-Id`` parsing/formatting (property-based) and the OpenTelemetry propagators.

Facts checked: aws-facts.md §2 (Root/Parent/Sampled incl. ``?``, Lineage and unknown keys kept,
order-free keys, 256-character cap; W3C traceparent/tracestate carried through).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tracekit.tracing.propagation import (
    HEADER,
    MAX_HEADER_LEN,
    XRayHeader,
    XRayPropagator,
    decision_requested,
    format_header,
    parse_header,
)
from tracekit.tracing.provider import XRayParentBased
from tracekit.xray import ids

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
ROOT_INT = 0x5759E988BD862E3FE1BE46A994272793
PARENT = "53995c3f42cd8ad8"
PARENT_INT = 0x53995C3F42CD8AD8
FULL = f"Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1|68fd508a:5;Team=blue"

roots = st.integers(min_value=1, max_value=2**128 - 1)
parents = st.none() | st.integers(min_value=1, max_value=2**64 - 1)
decisions = st.sampled_from([True, False, None])
extra_keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,15}", fullmatch=True).filter(
    lambda k: k not in ("Root", "Parent", "Sampled")
)
extra_values = st.from_regex(r"[A-Za-z0-9:|._=-]{0,24}", fullmatch=True)
extras = st.lists(st.tuples(extra_keys, extra_values), max_size=12).map(tuple)


# -- parser and formatter -------------------------------------------------------------------------


def test_full_header() -> None:
    header = parse_header(FULL)
    assert header == XRayHeader(
        ROOT_INT, PARENT_INT, True, False, (("Lineage", "a87bd80c:1|68fd508a:5"), ("Team", "blue"))
    )
    assert header.to_header() == FULL


@pytest.mark.parametrize(
    ("value", "sampled", "requested"),
    [
        (f"Root={ROOT};Sampled=1", True, False),
        (f"Root={ROOT};Sampled=0", False, False),
        (f"Root={ROOT};Sampled=?", None, True),
        (f"Root={ROOT}", None, False),
    ],
)
def test_sampled_forms(value: str, sampled: bool | None, requested: bool) -> None:
    header = parse_header(value)
    assert header is not None
    assert (header.root, header.parent, header.sampled) == (ROOT_INT, None, sampled)
    assert header.decision_requested is requested


def test_keys_are_order_free_and_spaces_tolerated() -> None:
    header = parse_header(f" Lineage=a:1 ; Sampled=0;Parent={PARENT.upper()} ;  Root={ROOT} ")
    assert header == XRayHeader(ROOT_INT, PARENT_INT, False, False, (("Lineage", "a:1"),))


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "Root=",
        "Root=1-5759e988-bd862e3fe1be46a99427279",
        f"root={ROOT};Sampled=1",  # keys are case-sensitive
        f"Parent={PARENT};Sampled=1",
        f"Root={ROOT}".replace("1-", "2-", 1),
        "Root=1-00000000-000000000000000000000000",
        ";;;===;;",
        f"Root={ROOT};" + "x" * 5000,
    ],
)
def test_malformed_headers_give_none(value: str | None) -> None:
    assert parse_header(value) is None


@given(st.text(max_size=400))
def test_parser_never_raises_on_arbitrary_text(value: str) -> None:
    header = parse_header(value)
    assert header is None or header.root > 0


fragments = st.sampled_from(
    [f"Root={ROOT}", f"Parent={PARENT}", "Sampled=?", "Sampled=1", "Lineage=x:1", "=", ";", " ", "Root"]
)


@given(st.lists(fragments | st.text(max_size=20), max_size=12))
def test_parser_never_raises_on_near_miss_headers(parts: list[str]) -> None:
    value = ";".join(parts)
    header = parse_header(value)
    if header is not None:
        assert header.root == ROOT_INT and f"Root={ROOT}" in value


@given(roots, parents, decisions, extras)
def test_format_then_parse_round_trip(
    root: int, parent: int | None, sampled: bool | None, extra: tuple[tuple[str, str], ...]
) -> None:
    text = format_header(root, parent, sampled, extra)
    assert len(text) <= MAX_HEADER_LEN
    header = parse_header(text)
    assert header is not None
    assert (header.root, header.parent, header.sampled) == (root, parent, sampled)
    assert header.decision_requested is (sampled is None)
    assert header.extra == extra[: len(header.extra)]  # kept in order, cut only at the cap
    if len(header.extra) < len(extra):
        key, val = extra[len(header.extra)]
        assert len(f"{text};{key}={val}") > MAX_HEADER_LEN
    assert parse_header(header.to_header()) == header


@given(st.permutations([f"Root={ROOT}", f"Parent={PARENT}", "Sampled=?", "Lineage=b1:0", "K=v"]))
def test_any_key_order_parses_the_same(parts: list[str]) -> None:
    header = parse_header(";".join(parts))
    assert header is not None
    assert (header.root, header.parent, header.sampled, header.decision_requested) == (
        ROOT_INT,
        PARENT_INT,
        None,
        True,
    )
    assert sorted(header.extra) == [("K", "v"), ("Lineage", "b1:0")]


def test_cap_keeps_the_trace_fields_and_drops_extra_keys_that_do_not_fit() -> None:
    extra = (("Lineage", "a87bd80c:1"), ("Big", "x" * 300), ("Small", "y"))
    text = format_header(ROOT_INT, PARENT_INT, True, extra)
    assert text == f"Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1"
    assert len(format_header(ROOT_INT, None, None, [("K", "v" * 250)])) <= MAX_HEADER_LEN


# -- the OpenTelemetry propagator -----------------------------------------------------------------


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    """An SDK tracer with tracekit's sampler: honour the caller, decide for ``Sampled=?``."""
    provider = TracerProvider(sampler=XRayParentBased(ALWAYS_ON), id_generator=ids.XRayIdGenerator())
    yield provider.get_tracer("tests.propagation")
    provider.shutdown()


def _remote(ctx: Context) -> trace.SpanContext:
    return trace.get_current_span(ctx).get_span_context()


def test_extract_full_header() -> None:
    ctx = XRayPropagator().extract({HEADER: FULL})
    remote = _remote(ctx)
    assert (remote.trace_id, remote.span_id, remote.is_remote) == (ROOT_INT, PARENT_INT, True)
    assert remote.trace_flags.sampled is True
    assert decision_requested(ctx) is False


def test_extract_reads_a_lower_case_header_name() -> None:
    ctx = XRayPropagator().extract({"x-amzn-trace-id": FULL})
    assert _remote(ctx).trace_id == ROOT_INT


@pytest.mark.parametrize(
    ("flag", "sampled", "requested"),
    [(";Sampled=0", False, False), (";Sampled=?", False, True), ("", False, True)],
)
def test_extract_sampling_decision(flag: str, sampled: bool, requested: bool) -> None:
    ctx = XRayPropagator().extract({HEADER: f"Root={ROOT};Parent={PARENT}{flag}"})
    assert _remote(ctx).trace_flags.sampled is sampled
    assert decision_requested(ctx) is requested


def test_extract_root_only_keeps_the_trace_id() -> None:
    remote = _remote(XRayPropagator().extract({HEADER: f"Root={ROOT};Sampled=1"}))
    assert remote.trace_id == ROOT_INT and remote.is_valid and remote.trace_flags.sampled
    # the translator recognises the stand-in parent by its id; nothing rides in trace_state
    assert remote.span_id == ids.synthetic_parent_id(ROOT_INT)
    assert len(remote.trace_state) == 0


@given(st.text(max_size=300))
def test_extract_never_raises_and_malformed_keeps_the_context(value: str) -> None:
    base = Context()
    ctx = XRayPropagator().extract({HEADER: value}, context=base)
    if parse_header(value) is None:
        assert ctx is base
        assert not _remote(ctx).is_valid


def test_inject_without_a_span_writes_nothing() -> None:
    carrier: dict[str, str] = {}
    XRayPropagator().inject(carrier, context=Context())
    assert carrier == {}
    assert XRayPropagator().fields == {HEADER}


def test_inject_from_a_child_span_keeps_root_lineage_and_unknown_keys(tracer: Tracer) -> None:
    prop = XRayPropagator()
    ctx = prop.extract({HEADER: FULL})
    token = otel_context.attach(ctx)
    try:
        with tracer.start_as_current_span("server", kind=SpanKind.SERVER) as span:
            carrier: dict[str, str] = {}
            prop.inject(carrier)
            span_id = span.get_span_context().span_id
    finally:
        otel_context.detach(token)
    header = parse_header(carrier[HEADER])
    assert header == XRayHeader(
        ROOT_INT, span_id, True, False, (("Lineage", "a87bd80c:1|68fd508a:5"), ("Team", "blue"))
    )


def test_inbound_sampled_0_is_honoured_downstream(tracer: Tracer) -> None:
    prop = XRayPropagator()
    ctx = prop.extract({HEADER: f"Root={ROOT};Parent={PARENT};Sampled=0"})
    with tracer.start_as_current_span("server", context=ctx, kind=SpanKind.SERVER) as span:
        assert not span.is_recording()
        carrier: dict[str, str] = {}
        prop.inject(carrier)
    header = parse_header(carrier[HEADER])
    assert header is not None and header.sampled is False and header.root == ROOT_INT


def test_sampled_question_mark_lets_the_callee_decide(tracer: Tracer) -> None:
    ctx = XRayPropagator().extract({HEADER: f"Root={ROOT};Parent={PARENT};Sampled=?"})
    with tracer.start_as_current_span("server", context=ctx, kind=SpanKind.SERVER) as span:
        assert span.is_recording()  # the root sampler (ALWAYS_ON here) decided
        assert span.get_span_context().trace_id == ROOT_INT


@given(roots, parents.filter(bool), st.booleans(), extras)
def test_extract_then_inject_round_trip(
    root: int, parent: int, sampled: bool, extra: tuple[tuple[str, str], ...]
) -> None:
    text = format_header(root, parent, sampled, extra)
    prop = XRayPropagator()
    carrier: dict[str, str] = {}
    prop.inject(carrier, context=prop.extract({HEADER: text}))
    assert carrier[HEADER] == text


# -- W3C trace context alongside X-Ray ------------------------------------------------------------

TRACEPARENT = f"00-{ROOT_INT:032x}-{PARENT}-01"


def _composite() -> CompositePropagator:
    return CompositePropagator([TraceContextTextMapPropagator(), XRayPropagator()])


def _inject_from_child(tracer: Tracer, carrier_in: dict[str, str]) -> tuple[dict[str, str], int]:
    prop = _composite()
    ctx = prop.extract(carrier_in)
    out: dict[str, str] = {}
    with (
        tracer.start_as_current_span("server", context=ctx, kind=SpanKind.SERVER),
        tracer.start_as_current_span("client", kind=SpanKind.CLIENT) as client,
    ):
        prop.inject(out)
        span_id = client.get_span_context().span_id
    return out, span_id


def test_composite_writes_both_headers_with_the_same_ids(tracer: Tracer) -> None:
    out, span_id = _inject_from_child(tracer, {HEADER: FULL})
    assert out["traceparent"] == f"00-{ROOT_INT:032x}-{span_id:016x}-01"
    header = parse_header(out[HEADER])
    assert header is not None and (header.root, header.parent, header.sampled) == (ROOT_INT, span_id, True)


def test_composite_extracts_w3c_alone_and_carries_tracestate(tracer: Tracer) -> None:
    out, span_id = _inject_from_child(tracer, {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
    assert out["traceparent"] == f"00-{ROOT_INT:032x}-{span_id:016x}-01"
    assert out["tracestate"] == "vendor=abc"
    assert parse_header(out[HEADER]) == XRayHeader(ROOT_INT, span_id, True)


def test_composite_extracts_xray_alone() -> None:
    ctx = _composite().extract({HEADER: FULL})
    assert (_remote(ctx).trace_id, _remote(ctx).span_id) == (ROOT_INT, PARENT_INT)


def test_composite_ignores_a_malformed_xray_header_next_to_a_valid_traceparent() -> None:
    ctx = _composite().extract({"traceparent": TRACEPARENT, HEADER: "Root=broken"})
    assert (_remote(ctx).trace_id, _remote(ctx).span_id) == (ROOT_INT, PARENT_INT)


def test_root_only_header_does_not_leak_internal_state_downstream(tracer: Tracer) -> None:
    """A Root-only inbound header must not put tracekit's private marker into W3C tracestate.

    The SDK copies a parent's trace_state into every descendant, so a marker kept there reaches
    every outgoing ``tracestate`` (and makes the next service think its real parent is made up).
    """
    out, span_id = _inject_from_child(tracer, {HEADER: f"Root={ROOT};Sampled=1"})
    assert out.get("tracestate", "") == ""
    assert out["traceparent"] == f"00-{ROOT_INT:032x}-{span_id:016x}-01"


def test_forwarding_a_root_only_header_without_a_span_keeps_it_root_only() -> None:
    """A relay that re-injects what it extracted must not invent a Parent nobody emitted."""
    ctx = XRayPropagator().extract({HEADER: f"Root={ROOT};Sampled=1;Lineage=1:ab12cd34:0"})
    out: dict[str, str] = {}
    XRayPropagator().inject(out, ctx)
    assert out[HEADER] == f"Root={ROOT};Sampled=1;Lineage=1:ab12cd34:0"
