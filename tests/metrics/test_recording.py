"""Scopes, the cardinality guard, timers, RED metrics and fault tolerance."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from emf_helpers import Capture

import tracekit.metrics as metrics
from tracekit._shared import stats as _stats
from tracekit.metrics.model import Batch
from tracekit.metrics.recorder import OVERFLOW


def test_concurrent_threads_never_mix_scope_dimensions(capture: Capture) -> None:
    barrier = threading.Barrier(8)

    def request(tenant: str) -> None:
        with metrics.scope(dimensions={"tenant": tenant}) as scope:
            barrier.wait()
            for _ in range(50):
                metrics.count("orders")
                time.sleep(0)
            scope.set_property("who", tenant)

    threads = [threading.Thread(target=request, args=(f"t{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    docs = capture.docs()
    assert sorted(d["tenant"] for d in docs) == [f"t{i}" for i in range(8)]
    assert all(d["orders"] == 50 and d["who"] == d["tenant"] for d in docs)


def test_asyncio_tasks_get_their_own_scopes(capture: Capture) -> None:
    async def handler(user: str) -> None:
        with metrics.scope() as scope:
            scope.add_dimension("user", user)
            await asyncio.sleep(0)
            metrics.observe("work", 1.0)

    async def main() -> None:
        await asyncio.gather(*(handler(f"u{i}") for i in range(5)))

    asyncio.run(main())
    assert sorted(d["user"] for d in capture.docs()) == [f"u{i}" for i in range(5)]


def test_scope_without_flush_merges_into_the_interval_aggregate(capture: Capture) -> None:
    for _ in range(3):
        with metrics.scope(dimensions={"route": "/a"}, flush=False):
            metrics.count("calls")
    assert capture.stream.getvalue() == ""
    (doc,) = capture.docs()
    assert doc["calls"] == 3 and doc["route"] == "/a"


def test_cardinality_guard_folds_and_warns_once(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    metrics.configure(
        "Test/App", outputs=[capture.output], service="svc", flush_interval=0,
        max_dimension_combinations=3, env={},
    )  # fmt: skip
    caplog.set_level(logging.WARNING, logger="tracekit")
    for user in range(10):
        metrics.count("logins", dimensions={"user": str(user)})
    docs = capture.docs()
    by_user = {d["user"]: d["logins"] for d in docs}
    assert by_user == {"0": 1, "1": 1, "2": 1, OVERFLOW: 7}
    assert all(d["ServiceName"] == "svc" for d in docs)  # defaults are never folded
    assert _stats.stats()["metrics.cardinality_overflow"] == 7
    warnings = [r for r in caplog.records if "dimension combinations" in r.getMessage()]
    assert len(warnings) == 1 and "'logins'" in warnings[0].getMessage()


def test_timed_as_decorator_context_manager_and_async(capture: Capture) -> None:
    @metrics.timed("sync_ms")
    def work() -> int:
        time.sleep(0.01)
        return 7

    @metrics.timed("async_s", unit="Seconds")
    async def awork() -> str:
        await asyncio.sleep(0.01)
        return "ok"

    assert work() == 7
    assert asyncio.run(awork()) == "ok"
    with metrics.timed("block_ms", dimensions={"step": "load"}):
        time.sleep(0.01)
    shared = metrics.timed("shared_ms")  # one instance, two threads timing overlapping blocks
    first_in = threading.Event()

    def first() -> None:  # enters first, leaves first: 30 ms
        with shared:
            first_in.set()
            time.sleep(0.03)

    def second() -> None:  # enters 10 ms later, leaves last: 60 ms
        first_in.wait()
        time.sleep(0.01)
        with shared:
            time.sleep(0.06)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    short, long = capture.values("shared_ms")
    assert short >= 28 and long >= 58  # a shared stack would report ~20 and ~70
    assert 9 <= capture.values("sync_ms")[0] < 1000
    assert 0.009 <= capture.values("async_s")[0] < 1
    assert 9 <= capture.values("block_ms")[0] < 1000


def test_record_request_red_metrics(capture: Capture) -> None:
    for status in (200, 201, 404, 500, 503):
        metrics.record_request("/items/{id}", "GET", status, 10.0)
    metrics.record_request("/items", "POST", 201, 5.0)
    docs = {(d["Route"], d["Method"]): d for d in capture.docs()}
    get = docs[("/items/{id}", "GET")]
    assert (get["RequestCount"], get["ClientErrors"], get["ServerErrors"]) == (5, 1, 2)
    assert get["Latency"] == [10.0] * 5
    assert docs[("/items", "POST")]["RequestCount"] == 1


def test_record_request_is_cheap_and_a_noop_when_unconfigured() -> None:
    metrics.shutdown()
    _stats.reset()
    start = time.perf_counter()
    for _ in range(10_000):
        metrics.record_request("/x", "GET", 200, 1.0)
    assert (time.perf_counter() - start) / 10_000 < 20e-6
    assert metrics.flush() is True
    assert _stats.stats() == {}
    with metrics.scope() as scope:
        scope.add_dimension("a", "b")


def test_metrics_recorded_before_configure_are_refused_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics.shutdown()
    _stats.reset()
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        start = time.perf_counter()
        for _ in range(10_000):
            metrics.count("Orders")
        metrics.observe("Latency", 3.0)
        assert (time.perf_counter() - start) / 10_000 < 20e-6
    assert _stats.stats()["metrics.dropped.not_configured"] == 10_001
    warnings = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    assert len(warnings) == 1
    assert "'Orders'" in warnings[0] and "metrics.configure(namespace=" in warnings[0]
    assert "AWS_EMF_NAMESPACE" in warnings[0]
    assert metrics.flush() is False  # something recorded was not delivered
    assert metrics.flush() is True  # nothing since


def test_record_request_bad_values_never_raise(capture: Capture) -> None:
    metrics.record_request("/x", "GET", 200, float("nan"))
    metrics.record_request("/x", "GET", "200", 1.0)  # type: ignore[arg-type]
    metrics.record_request(None, 5, 200, 1.0)  # type: ignore[arg-type]
    assert _stats.stats()["metrics.rejected"] == 2
    assert capture.values("RequestCount") == [1]


class _Broken:
    def emit(self, batch: Batch) -> None:
        raise RuntimeError("disk on fire")

    def flush(self, timeout: float) -> bool:
        raise RuntimeError("still on fire")

    def close(self, timeout: float) -> None:
        raise RuntimeError("no")


def test_a_broken_output_never_reaches_the_app(capture: Capture) -> None:
    metrics.configure("Test/App", outputs=[_Broken(), capture.output], flush_interval=0, env={})
    with metrics.scope():
        metrics.count("survives")
    assert metrics.flush() is False
    assert capture.values("survives") == [1]
    assert _stats.stats()["errors.metrics.output._Broken"] >= 1
    metrics.shutdown()  # close() raising is reported, not raised
    assert _stats.stats()["errors.metrics.shutdown"] == 1


def test_interval_flush_emits_without_any_call(capture: Capture) -> None:
    metrics.configure("Test/App", outputs=[capture.output], flush_interval=0.05, env={})
    metrics.count("tick")
    deadline = time.monotonic() + 5
    while "tick" not in capture.stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert '"tick":1' in capture.stream.getvalue()


def test_environment_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics.shutdown()
    monkeypatch.setattr(metrics._state, "env_checked", False)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "FromEnv")
    monkeypatch.setenv("AWS_EMF_ENVIRONMENT", "Lambda")
    monkeypatch.setenv("AWS_EMF_SERVICE_NAME", "checkout")
    metrics.count("auto")
    metrics.flush()
    out = capsys.readouterr().out
    assert '"Namespace":"FromEnv"' in out and '"ServiceName":"checkout"' in out
    metrics.shutdown()
    with pytest.raises(ValueError, match="AWS_EMF_ENVIRONMENT='mars' is not valid"):
        metrics.configure(env={"AWS_EMF_ENVIRONMENT": "mars"})
    with pytest.raises(ValueError, match="outputs='carrier-pigeon' is not valid"):
        metrics.configure(outputs=["carrier-pigeon"], env={})


def test_timed_blocks_leave_nothing_behind_in_the_context(capture: Capture) -> None:
    import contextvars

    shared = metrics.timed("shared")
    with shared:
        pass
    before = len(contextvars.copy_context())
    for _ in range(1000):
        with metrics.timed("fresh"), shared, shared:  # new instances and a re-entered one
            pass
    assert len(contextvars.copy_context()) == before
    assert len(capture.values("fresh")) == 1000 and len(capture.values("shared")) == 2001


def test_a_scope_exited_in_another_context_still_emits(capture: Capture) -> None:
    import contextvars

    scope = metrics.scope(dimensions={"job": "j1"})
    entered = contextvars.copy_context()  # the test's own context stays untouched
    entered.run(scope.__enter__)
    entered.run(metrics.count, "steps")
    contextvars.copy_context().run(scope.__exit__, None, None, None)  # no exception
    (doc,) = capture.docs()
    assert doc["job"] == "j1" and doc["steps"] == 1
    assert _stats.stats()["metrics.scope.other_context"] == 1
