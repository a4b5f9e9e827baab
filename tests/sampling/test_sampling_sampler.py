"""tracekit's XRaySampler: local fallback, centralized rules and quotas, rule expiry, the poller
thread (lazy, off the request path, backing off and counted), boosts fed by span ends."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import StatusCode

from tracekit._shared import stats as _stats
from tracekit.sampling.controlplane import ControlPlane
from tracekit.sampling.rules import Rule
from tracekit.sampling.sampler import RULE_NAME_ATTRIBUTE, XRaySampler

RULES_DIR = Path(__file__).resolve().parents[2] / "sampling"
ORDERS = {"http.request.method": "POST", "url.path": "/orders/1"}


def decide(sampler: XRaySampler, attributes: dict[str, Any]) -> tuple[bool, str | None]:
    result = sampler.should_sample(None, 1, "span", attributes=attributes)
    name = (result.attributes or {}).get(RULE_NAME_ATTRIBUTE)
    return result.decision.is_sampled(), None if name is None else str(name)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def sampled_count(sampler: XRaySampler, clock: Any, attributes: dict[str, Any],
                  seconds: int, rps: int) -> int:
    count = 0
    for _ in range(seconds * rps):
        clock.advance(1 / rps)
        count += decide(sampler, attributes)[0]
    return count


@pytest.fixture(autouse=True)
def clean_stats() -> Iterator[None]:
    _stats.reset()
    yield
    _stats.reset()


def test_builtin_default_is_one_per_second_plus_five_percent(clock: Any) -> None:
    sampler = XRaySampler("svc", clock=clock, rng=random.Random(3))
    count = sampled_count(sampler, clock, {}, seconds=100, rps=20)
    expected, sd = 100 + 0.05 * 1900, (1900 * 0.05 * 0.95) ** 0.5
    assert abs(count - expected) < 5 * sd
    assert decide(sampler, {})[1] in ("Default", None)
    assert sampler.get_description() == "XRaySampler{service=svc, endpoint=local}"


def test_local_rules_from_files_both_semconv_generations(clock: Any) -> None:
    sampler = XRaySampler("order-service", local_rules=RULES_DIR, clock=clock,
                          rng=random.Random(1))
    old = {"http.method": "GET", "http.target": "/health?probe=1", "http.host": "a"}
    new = {"http.request.method": "GET", "url.path": "/health", "server.address": "a"}
    for attributes in (old, new):
        assert sampled_count(sampler, clock, attributes, seconds=3, rps=50) == 0
        assert decide(sampler, attributes) == (False, None)  # no boost on that rule: DROP
    pay = {"http.method": "PUT", "http.target": "/api/payment/9"}
    assert sampled_count(sampler, clock, pay, seconds=2, rps=50) == 100
    assert decide(sampler, pay) == (True, "High-priority transactions")
    # a local reservoir is per process per second: exactly 2 each second at rate 0 beyond
    sampler_zero = XRaySampler("order-service", clock=clock, rng=random.Random(1),
                               local_rules=[Rule("x", 1, 0.0, 2)])
    assert sampled_count(sampler_zero, clock, {}, seconds=5, rps=10) == 10


def test_centralized_rules_quota_and_expiry(seeded: ControlPlane, clock: Any) -> None:
    sampler = XRaySampler("order-service", endpoint=seeded.url, clock=clock,
                          rng=random.Random(2), background=False)
    assert decide(sampler, ORDERS)[1] == "Default"  # before the first poll: local default
    sampler.poll_rules()
    # no quota yet: borrow one per second, then 10%
    borrowed = sampled_count(sampler, clock, ORDERS, seconds=10, rps=1)
    assert borrowed == 10
    sampler.poll_targets()
    assert {s.rule.name: s.quota for s in sampler._central}["API calls"] == 2
    summary = seeded.handle("POST", "/SamplingStatisticSummaries", {}, b"{}")[2]
    assert b'"BorrowCount": 10' in summary and b'"RequestCount": 10' in summary
    ones = sampled_count(sampler, clock, {**ORDERS, "url.path": "/orders/2"}, seconds=5, rps=2)
    assert ones == 10  # 2 per second fit the quota exactly
    clock.advance(3601)  # rules not refreshed for an hour: local rules decide again
    assert decide(sampler, ORDERS)[1] in ("Default", None)


def test_expired_quota_falls_back_to_borrowing(plane: ControlPlane, clock: Any) -> None:
    plane.load_rules([Rule("Five", 1, 0.0, 5)])
    sampler = XRaySampler("svc", endpoint=plane.url, clock=clock, background=False)
    sampler.poll_rules()
    decide(sampler, {})
    sampler.poll_targets()
    assert sampled_count(sampler, clock, {}, seconds=3, rps=10) == 15  # the quota: 5 per second
    clock.advance(20)  # no GetSamplingTargets since: the quota's TTL (15 s) has passed
    assert sampled_count(sampler, clock, {}, seconds=3, rps=10) == 3  # borrow 1 per second


def test_boost_never_lowers_the_rate(clock: Any) -> None:
    sampler = XRaySampler("svc", local_rules=[Rule("All", 1, 1.0, 0)], clock=clock)
    state = sampler._local[0]
    state.boost_rate, state.boost_ttl = 0.2, clock.now + 60  # a MaxRate below FixedRate
    assert sampled_count(sampler, clock, {}, seconds=2, rps=10) == 20


def test_rule_changes_are_picked_up_via_last_modification(seeded: ControlPlane, clock: Any) -> None:
    import json

    sampler = XRaySampler("order-service", endpoint=seeded.url, clock=clock, background=False)
    sampler.poll_rules()
    decide(sampler, ORDERS)
    clock.advance(11)
    body = {"SamplingRule": {"RuleName": "Orders v2", "ResourceARN": "*", "Priority": 15,
                             "FixedRate": 1.0, "ReservoirSize": 0, "ServiceName": "*",
                             "ServiceType": "*", "Host": "*", "HTTPMethod": "*",
                             "URLPath": "/orders/*", "Version": 1}}
    assert seeded.handle("POST", "/CreateSamplingRule", {}, json.dumps(body).encode())[0] == 200
    clock.advance(1)
    sampler.poll_targets()  # LastRuleModification is newer: rules are fetched at once
    assert decide(sampler, ORDERS) == (True, "Orders v2")


def test_client_clock_behind_refreshes_once_per_modification(
        seeded: ControlPlane, clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = XRaySampler("order-service", endpoint=seeded.url, clock=lambda: clock.now - 30,
                          background=False)
    sampler.poll_rules()
    fetches: list[float] = []
    poll_rules = sampler.poll_rules
    monkeypatch.setattr(sampler, "poll_rules", lambda: (fetches.append(clock.now), poll_rules()))
    for _ in range(3):
        decide(sampler, ORDERS)
        clock.advance(11)
        sampler.poll_targets()
    assert len(fetches) == 1  # the seed's modification looks newer than our fetch: once, not always


def test_more_than_25_rules_report_over_two_polls(clock: Any) -> None:
    plane = ControlPlane(clock=clock, max_rules=30, page_size=100).start()
    try:
        plane.load_rules([Rule(f"r{i}", i + 1, 0.0, 1, url_path=f"/{i}") for i in range(30)])
        sampler = XRaySampler("s", endpoint=plane.url, clock=clock, background=False)
        sampler.poll_rules()
        for i in range(30):
            decide(sampler, {"url.path": f"/{i}"})
        for _ in range(2):
            clock.advance(11)
            sampler.poll_targets()  # 25 documents at most per call: nothing is lost
        summary = json.loads(plane.handle("POST", "/SamplingStatisticSummaries", {}, b"{}")[2])
        counts = {s["RuleName"]: s["RequestCount"] for s in summary["SamplingStatisticSummaries"]}
        assert counts == {f"r{i}": 1 for i in range(30)}
    finally:
        plane.stop()


def test_pages_and_unusable_rules(clock: Any) -> None:
    plane = ControlPlane(clock=clock, page_size=1).start()
    try:
        plane.load_dir(RULES_DIR)
        plane.load_rules([Rule("ECS only", 2, 1.0, 1, resource_arn="arn:aws:ecs:x")])
        sampler = XRaySampler("s", endpoint=plane.url, clock=clock, background=False)
        sampler.poll_rules()
        assert [s.rule.name for s in sampler._central] == [
            "Health checks (no sampling)", "High-priority transactions", "API calls", "Default"]
    finally:
        plane.stop()


def test_boost_from_span_ends(seeded: ControlPlane, clock: Any) -> None:
    sampler = XRaySampler("order-service", endpoint=seeded.url, clock=clock,
                          rng=random.Random(4), background=False)
    sampler.poll_rules()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(sampler.stats_processor())
    tracer = provider.get_tracer("test")
    recorded_only = 0
    for i in range(40):
        clock.advance(0.05)
        with tracer.start_as_current_span("POST /orders", attributes=ORDERS) as span:
            recorded_only += span.is_recording() and not span.get_span_context().trace_flags.sampled
            span.set_attribute("http.response.status_code", 500 if i % 4 == 0 else 200)
            if i == 1:
                span.set_status(StatusCode.ERROR)  # an exception without a 5xx is an anomaly too
            with tracer.start_as_current_span("child"):
                pass
    assert recorded_only > 0  # unsampled spans of a boostable rule still report their outcome
    state = {s.rule.name: s for s in sampler._central}["API calls"]
    assert (state.total, state.anomalies) == (40, 11)
    sampler.poll_targets()
    assert state.boost_rate == 0.5 and state.boost_ttl == pytest.approx(clock() + 60)
    count = sampled_count(sampler, clock, ORDERS, seconds=20, rps=20)
    expected, sd = 20 * 2 + 0.5 * 20 * 18, (20 * 18 * 0.25) ** 0.5
    assert abs(count - expected) < 5 * sd
    clock.advance(60)  # the boost is over
    count = sampled_count(sampler, clock, ORDERS, seconds=1, rps=20)
    assert count < 2 + 10
    provider.shutdown()


def test_background_poller_is_lazy_and_single(seeded: ControlPlane) -> None:
    sampler = XRaySampler("order-service", endpoint=seeded.url, targets_interval=0.05)
    def names() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "tracekit-xray-sampler"]

    before = len(names())
    assert sampler._thread is None
    threads = [threading.Thread(target=decide, args=(sampler, ORDERS)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names()) == before + 1
    wait_for(lambda: decide(sampler, ORDERS)[1] == "API calls")
    wait_for(lambda: _stats.stats().get("sampling.targets_polls", 0) >= 1)
    sampler.shutdown()
    assert sampler._thread is not None and not sampler._thread.is_alive()


def test_unreachable_and_hung_endpoints_stay_off_the_request_path() -> None:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1)  # accepts connections, never answers
    try:
        for endpoint in ("http://127.0.0.1:9", f"http://127.0.0.1:{hung.getsockname()[1]}"):
            sampler = XRaySampler("svc", endpoint=endpoint, timeout=0.3)
            started = time.perf_counter()
            for _ in range(200):
                decide(sampler, ORDERS)
            assert time.perf_counter() - started < 0.5
            assert decide(sampler, ORDERS)[1] in ("Default", None)  # local rules decide
            wait_for(lambda: _stats.stats().get("errors.sampling.rules_poll", 0) >= 1)
            sampler.shutdown()
            _stats.reset()
    finally:
        hung.close()


def test_backoff_retries_then_recovers(clock: Any) -> None:
    plane = ControlPlane(clock=clock)
    plane.load_dir(RULES_DIR)
    plane.start()
    plane.throttle_next("/GetSamplingRules", times=2)
    try:
        sampler = XRaySampler("order-service", endpoint=plane.url, clock=clock)
        started = time.monotonic()
        decide(sampler, ORDERS)
        wait_for(lambda: _stats.stats().get("sampling.rules_polls", 0) >= 1)  # 3rd try: 1 s + 2 s
        assert time.monotonic() - started >= 2.9  # backed off, did not hammer the endpoint
        assert _stats.stats()["errors.sampling.rules_poll"] == 2
        assert decide(sampler, ORDERS)[1] == "API calls"
        sampler.shutdown()
    finally:
        plane.stop()


def test_a_broken_decision_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = XRaySampler("svc")

    def boom(*_: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(sampler, "_select", boom)
    assert decide(sampler, ORDERS) == (False, None)
    assert _stats.stats()["errors.sampling.decision"] == 1


def test_rule_attributes_match_span_attributes(plane: ControlPlane, clock: Any) -> None:
    plane.load_rules([Rule("Gold tenants", 5, 1.0, 0, attributes={"tenant": "gold-*"}),
                      Rule("Nobody else", 6, 0.0, 0)])
    sampler = XRaySampler("svc", endpoint=plane.url, clock=clock, background=False)
    sampler.poll_rules()
    assert decide(sampler, {"tenant": "GOLD-7", "http.request.method": "GET"}) == (
        True, "Gold tenants")
    assert decide(sampler, {"tenant": "silver"}) == (False, None)
    assert decide(sampler, {"tenant": 7}) == (False, None)  # only string attributes match


def test_forked_worker_is_a_new_client(seeded: ControlPlane) -> None:
    import os

    sampler = XRaySampler("order-service", endpoint=seeded.url, targets_interval=0.05)
    decide(sampler, ORDERS)
    wait_for(lambda: sampler._fetched_at is not None)
    decide(sampler, ORDERS)
    wait_for(lambda: any(s.quota is not None for s in sampler._central))  # the parent's quota
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: no poller thread, quota or counts inherited; a new ClientID
        ok = sampler._thread is None
        ok = ok and all(s.quota is None and s.requests == 0 for s in sampler._central)
        decide(sampler, ORDERS)
        ok = ok and sampler._thread is not None and sampler._thread.is_alive()
        os.write(write, f"{int(ok)} {sampler.client_id}".encode())
        os._exit(0)
    os.close(write)
    answer = os.read(read, 100).decode().split()
    os.waitpid(pid, 0)
    sampler.shutdown()
    assert answer[0] == "1" and answer[1] != sampler.client_id and len(answer[1]) == 24
