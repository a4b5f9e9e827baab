"""Whatever the application passes, recording never raises and nothing else is lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from emf_helpers import Capture
from prometheus_client import CollectorRegistry, generate_latest

import tracekit.metrics as metrics
from tracekit._shared import stats as _stats
from tracekit.metrics import recorder
from tracekit.metrics.prometheus import PrometheusOutput

BAD_CALLS: list[tuple[dict[str, Any], str]] = [
    ({"dimensions": ["Route"]}, "metric 'm': dimensions ['Route'] are not valid: expected a"),
    ({"dimensions": "Route=/a"}, "dimensions 'Route=/a' are not valid"),
    ({"dimensions": 5}, "dimensions 5 are not valid"),
    ({"dimensions": {"a": "b", 1: "c"}}, "metric 'm': dimension name 1 is not valid"),
    ({"dimensions": {("t",): "x"}}, "dimension name ('t',) is not valid"),
    ({"name": ["m"]}, "metric name ['m'] is not valid"),
    ({"name": "_aws"}, "metric name '_aws' is not valid: it is the EMF metadata member"),
    ({"dimensions": {"_aws": "v"}}, "metric 'm': dimension name '_aws' is not valid"),
    ({"unit": ["Count"]}, "metric 'm': unit ['Count'] is not a CloudWatch unit"),
    ({"resolution": [1]}, "metric 'm': storage resolution [1] is not valid: expected 1 or 60"),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS)
def test_bad_arguments_are_reported_not_raised(
    capture: Capture, caplog: pytest.LogCaptureFixture, call: dict[str, Any], message: str
) -> None:
    arguments = {"name": "m", "value": 1, "unit": "Count", "dimensions": None, "resolution": 60}
    metrics.count(**{**arguments, **call})
    metrics.count("fine")
    assert capture.values("fine") == [1] and '"m"' not in capture.stream.getvalue()
    assert _stats.stats()["metrics.rejected"] == 1
    assert message in caplog.text


def test_bad_scope_arguments_keep_the_scope_working(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    bad: Any = ["Tenant"]
    with metrics.scope(dimensions=bad, properties=bad) as scope:
        scope.add_dimension(["k"], "v")  # type: ignore[arg-type]
        scope.add_dimension("Tenant", "t1")
        scope.set_property(7, "seven")  # type: ignore[arg-type]
        metrics.count("inside")
    (doc,) = capture.docs()
    assert doc["Tenant"] == "t1" and doc["inside"] == 1 and doc["7"] == "seven"
    assert "scope dimensions ['Tenant'] are not valid: expected a mapping" in caplog.text
    assert "scope dimension name ['k'] is not valid" in caplog.text
    assert _stats.stats()["metrics.rejected"] == 3


def test_timed_with_a_bad_unit_reports_and_runs(capture: Capture) -> None:
    @metrics.timed("t", unit=["ms"])  # type: ignore[arg-type]
    def work() -> int:
        return 7

    assert work() == 7
    assert _stats.stats()["metrics.rejected"] == 1


def test_properties_that_are_not_json_keep_the_document_valid(capture: Capture) -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    props = {"nan": float("nan"), "inf": [float("-inf")], "cycle": cycle, "ok": 1.5, "_aws": 1}
    with metrics.scope(properties=props):
        metrics.count("kept")
    (doc,) = capture.docs()
    assert doc["nan"] == "nan" and doc["inf"] == "[-inf]" and doc["ok"] == 1.5
    assert isinstance(doc["cycle"], str) and doc["kept"] == 1
    text = capture.stream.getvalue()
    assert "NaN" not in text and "Infinity" not in text and text.count('"_aws"') == 1


def test_strict_mode_raises_at_the_call_and_never_loses_a_flush(capture: Capture) -> None:
    defaults = {f"d{i}": "v" for i in range(29)}
    metrics.configure(
        "Test/App", outputs=[capture.output], default_dimensions=defaults, flush_interval=0,
        strict=True, env={},
    )  # fmt: skip
    with pytest.raises(metrics.MetricError, match="'nan_metric': value nan is NaN"):
        metrics.count("nan_metric", float("nan"))
    with metrics.scope() as scope:
        metrics.count("wide", dimensions={"x": "1"})  # 30 dimensions: fine when recorded
        metrics.count("narrow")
        scope.add_dimension("late", "1")  # 31 for "wide" by flush time
    docs = capture.docs()
    assert [d.get("narrow") for d in docs] == [1]
    assert _stats.stats()["metrics.rejected"] == 1


def test_distinct_metric_names_are_capped(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(recorder, "MAX_NAMES", 3)
    for user in range(5):
        metrics.count(f"logins-user-{user}")
    (doc,) = capture.docs()
    assert sorted(key for key in doc if key.startswith("logins")) == [
        "logins-user-0", "logins-user-1", "logins-user-2"
    ]  # fmt: skip
    assert "over 3 distinct metric names" in caplog.text


def test_a_negative_counter_does_not_cost_prometheus_the_other_series(capture: Capture) -> None:
    registry = CollectorRegistry()
    metrics.configure("Test/App", outputs=[PrometheusOutput(registry)], flush_interval=0, env={})
    metrics.count("refunds", -2)
    metrics.count("orders", 3)
    metrics.flush()
    text = generate_latest(registry).decode()
    assert "orders_total 3.0" in text
    assert _stats.stats()["errors.metrics.prometheus"] == 1


def test_an_empty_namespace_is_refused() -> None:
    with pytest.raises(metrics.MetricError, match="namespace '' is not valid"):
        metrics.configure("", outputs=["stdout"], env={"AWS_EMF_NAMESPACE": "Fallback"})


def test_configuration_mistakes_name_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir.log"
    with pytest.raises(ValueError, match=r"outputs='file:.*dir.log' is not valid: expected file"):
        metrics.configure(outputs=[f"file:{missing}"], env={})
    with pytest.raises(ValueError, match="flush_interval=-1 is not valid: expected seconds >= 0"):
        metrics.configure(outputs=["stdout"], flush_interval=-1, env={})
    metrics.configure(outputs=f"file:{tmp_path / 'one.log'}", flush_interval=0, env={})  # no list
    metrics.count("single")
    metrics.flush()
    assert '"single":1' in (tmp_path / "one.log").read_text()
    metrics.shutdown()
