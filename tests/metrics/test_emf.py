"""EMF documents: splitting, limits, rejection of bad input, schema validity."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from emf_helpers import EMF_SCHEMA, UNITS, Capture, assert_valid_emf
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

import tracekit.metrics as metrics
from tracekit._shared import stats as _stats
from tracekit.metrics import emf
from tracekit.metrics.model import Batch, Series
from tracekit.xray.ids import to_xray_trace_id


def test_split_at_100_metrics_per_document(capture: Capture) -> None:
    with metrics.scope():
        for i in range(250):
            metrics.count(f"m{i}", i)
    docs = capture.docs()
    sizes = [len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in docs]
    assert sizes == [100, 100, 50]
    merged = {k: v for d in docs for k, v in d.items() if k.startswith("m")}
    assert merged == {f"m{i}": i for i in range(250)}


def test_split_at_100_values_per_metric(capture: Capture) -> None:
    for i in range(250):
        metrics.observe("latency", float(i))
    docs = capture.docs()
    assert [len(d["latency"]) for d in docs] == [100, 100, 50]
    assert capture.values("latency") == [float(i) for i in range(250)]


def test_counters_emit_their_sum_and_timestamps_are_ms(capture: Capture) -> None:
    before = int(time.time() * 1000)
    metrics.count("hits")
    metrics.count("hits", 4)
    (doc,) = capture.docs()
    assert doc["hits"] == 5
    assert before <= doc["_aws"]["Timestamp"] <= int(time.time() * 1000)
    assert doc["ServiceName"] == "svc"


def test_high_resolution_metrics_say_so(capture: Capture) -> None:
    metrics.gauge("depth", 3, resolution=1)
    metrics.gauge("other", 1)
    (doc,) = capture.docs()
    definitions = {m["Name"]: m for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert definitions["depth"] == {"Name": "depth", "Unit": "None", "StorageResolution": 1}
    assert "StorageResolution" not in definitions["other"]


def test_thirty_dimensions_counting_defaults(capture: Capture) -> None:
    ok = {f"d{i}": "v" for i in range(29)}  # + ServiceName = 30
    metrics.count("fits", dimensions=ok)
    metrics.count("too_many", dimensions={**ok, "extra": "v"})
    docs = capture.docs()
    assert any("fits" in d for d in docs)
    assert not any("too_many" in d for d in docs)
    assert _stats.stats()["metrics.rejected"] == 1


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: metrics.gauge("g", math.nan), "metric 'g': value nan is NaN"),
        (lambda: metrics.gauge("g", math.inf), "metric 'g': value inf is infinite"),
        (lambda: metrics.gauge("g", 2.0**400), "out of range"),
        (lambda: metrics.gauge("g", "12"), "metric 'g': value '12' is not a number"),  # type: ignore[arg-type]
        (lambda: metrics.count("c", unit="Requests"), "metric 'c': unit 'Requests' is not a"),
        (lambda: metrics.count("c", resolution=5), "storage resolution 5 is not valid"),
        (lambda: metrics.count("x" * 256), "metric name 'xxxx"),
        (lambda: metrics.count("c", dimensions={"k": ""}), "dimension 'k' value '' is not valid"),
        (lambda: metrics.count("c", dimensions={"k": 3}), "dimension 'k' value 3"),  # type: ignore[dict-item]
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(
    capture: Capture, call: Any, expected: str
) -> None:
    metrics.configure("Test/App", outputs=[capture.output], flush_interval=0, strict=True, env={})
    with pytest.raises(metrics.MetricError, match=expected.replace("(", r"\(")):
        call()
    metrics.configure("Test/App", outputs=[capture.output], flush_interval=0, env={})
    call()  # not strict: counted, nothing raised, the rest still recorded
    metrics.count("good")
    assert _stats.stats()["metrics.rejected"] == 1
    assert capture.values("good") == [1]


def test_a_name_keeps_its_first_unit(capture: Capture) -> None:
    metrics.observe("t", 1.0, unit="Milliseconds")
    metrics.observe("t", 1.0, unit="Seconds")
    assert capture.values("t") == [1.0]
    assert _stats.stats()["metrics.rejected"] == 1


def test_bad_namespace_is_a_configuration_error() -> None:
    with pytest.raises(metrics.MetricError, match="namespace 'bad name!'"):
        metrics.configure("bad name!", outputs=[], env={})
    with pytest.raises(metrics.MetricError, match="AWS/ prefix is reserved"):
        metrics.configure("AWS/Lambda", outputs=[], env={})


def test_trace_id_property_only_when_sampled(capture: Capture) -> None:
    sampled = TracerProvider(sampler=ALWAYS_ON).get_tracer("t")
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t")
    with sampled.start_as_current_span("req") as span, metrics.scope(dimensions={"r": "1"}):
        metrics.count("a")
    with unsampled.start_as_current_span("req"), metrics.scope(dimensions={"r": "2"}):
        metrics.count("a")
    docs = {d["r"]: d for d in capture.docs()}
    trace_id = span.get_span_context().trace_id
    assert docs["1"]["xray_trace_id"] == to_xray_trace_id(trace_id)
    assert "xray_trace_id" not in docs["2"]


_names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    series=st.lists(
        st.tuples(
            _names,
            st.sampled_from(UNITS),
            st.sampled_from([1, 60]),
            st.sampled_from(["count", "gauge", "observe"]),
            st.dictionaries(_names.map(lambda s: "D" + s), _names, max_size=30),
            st.lists(
                st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=230
            ),
        ),
        max_size=8,
        unique_by=lambda t: (t[0], tuple(sorted(t[4].items()))),
    )
)
def test_serialized_documents_are_schema_valid(series: list[Any]) -> None:
    batch = Batch(
        "Ns",
        1_700_000_000_000,
        [Series(n, u, r, k, tuple(sorted(d.items()))) for n, u, r, k, d, _ in series],
        [v for *_, v in series],
    )
    docs = emf.serialize(batch)
    for doc in docs:
        assert_valid_emf(doc)
    for name, _, _, kind, dims, values in series:
        if name in dims:
            continue
        emitted = []
        for doc in docs:
            if (
                name in doc
                and all(doc.get(k) == v for k, v in dims.items())
                and len(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == len(dims)
            ):
                emitted.extend(doc[name] if isinstance(doc[name], list) else [doc[name]])
        assert emitted == ([sum(values)] if kind == "count" else values)


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {
                    "Namespace": "N",
                    "Dimensions": [["svc"]],
                    "Metrics": [{"Name": "m", "Unit": "Count"}],
                }
            ],
        },
        "svc": "a",
        "m": 1,
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "$: expected a JSON object"),
        ({"m": 1}, "$._aws: missing"),
        (_doc(m=float("nan")), "$.m: metric 'm': value nan is NaN"),
        (_doc(m=list(range(101))), "$.m: 101 values"),
        (_doc(m=None), "$.m: metric 'm': value None is not a number"),
        (
            _doc(svc=None),
            "$.svc: dimension referenced by $._aws.CloudWatchMetrics[0].Dimensions[0]",
        ),
        (_doc(_aws={"Timestamp": 1.5, "CloudWatchMetrics": []}), "$._aws.Timestamp: 1.5"),
    ],
)
def test_validate_names_what_and_where(doc: Any, message: str) -> None:
    errors = emf.validate(doc)
    assert errors and errors[0].startswith(message), errors


def test_validate_directive_problems() -> None:
    doc = _doc()
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    directive["Namespace"] = "has space"
    directive["Dimensions"] = [[f"k{i}" for i in range(31)]]
    directive["Metrics"] = [{"Name": "m", "Unit": "Furlongs", "StorageResolution": 30}]
    errors = "\n".join(emf.validate(doc))
    assert "Namespace: namespace 'has space' is not valid" in errors
    assert "Dimensions[0]: 31 dimensions exceed 30" in errors
    assert "Metrics[0].Unit: metric 'm': unit 'Furlongs'" in errors
    assert "Metrics[0].StorageResolution" in errors
    assert emf.validate(_doc()) == []
    assert EMF_SCHEMA["required"] == ["_aws"]


def test_repeated_scope_shapes_reuse_the_plan_with_fresh_values(capture: Capture) -> None:
    for i in range(3):
        with metrics.scope(dimensions={"fn": "f"}, properties={"invocation": i}):
            metrics.count("calls", i + 1)
            metrics.observe("ms", float(i))
    docs = capture.docs()
    assert [(d["invocation"], d["calls"], d["ms"]) for d in docs] == [
        (0, 1, 0.0),
        (1, 2, 1.0),
        (2, 3, 2.0),
    ]


def test_properties_never_overwrite_dimensions_or_metrics(capture: Capture) -> None:
    with metrics.scope(dimensions={"fn": "f"}, properties={"fn": "p", "calls": "p", "note": "n"}):
        metrics.count("calls", 5)
    (doc,) = capture.docs()
    assert (doc["fn"], doc["calls"], doc["note"]) == ("f", 5, "n")


def _content(docs: list[dict[str, Any]]) -> tuple[dict[str, list[float]], dict[str, Any], set[str]]:
    """Values per metric, metric definitions and dimension sets, however split into documents."""
    values: dict[str, list[float]] = {}
    definitions: dict[str, Any] = {}
    dimension_sets: set[str] = set()
    for doc in docs:
        assert emf.validate(doc) == [], doc
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            dimension_sets.add(json.dumps(directive["Dimensions"]))
            assert len(directive["Metrics"]) <= 100
            for definition in directive["Metrics"]:
                definitions[definition["Name"]] = definition
                value = doc[definition["Name"]]
                values.setdefault(definition["Name"], []).extend(
                    value if isinstance(value, list) else [value]
                )
    return values, definitions, dimension_sets


def test_same_content_as_aws_embedded_metrics(capture: Capture) -> None:
    """A real peer's serializer on the same input: the same metrics, values, units, dimensions."""
    from aws_embedded_metrics.logger.metrics_context import MetricsContext
    from aws_embedded_metrics.serializers.log_serializer import LogSerializer
    from aws_embedded_metrics.storage_resolution import StorageResolution

    dims = {"Operation": "checkout", "Region": "eu-west-1", "ServiceName": "svc"}
    context = MetricsContext.empty()
    context.namespace = "Test/App"
    context.set_dimensions([dims], use_default=False)
    with metrics.scope(dimensions={"Operation": "checkout", "Region": "eu-west-1"}):
        for i in range(150):
            context.put_metric(f"step_{i:03d}", i + 0.5, "Milliseconds")
            metrics.observe(f"step_{i:03d}", i + 0.5)
        for v in range(250):
            context.put_metric("items", float(v), "Count")
            metrics.observe("items", float(v), unit="Count")
        context.put_metric("fast", 1.0, "Count", StorageResolution.HIGH)
        metrics.observe("fast", 1.0, unit="Count", resolution=1)
    peer = [json.loads(line) for line in LogSerializer.serialize(context)]
    assert _content(capture.docs()) == _content(peer)
