"""Conformance: the real aws-xray-sdk centralized sampler and tracekit's sampler, each against its
own local control plane seeded from sampling/, fed the same request stream on a simulated clock,
both follow the rule set: health never, payment always, orders ~2/s + 10%, the rest ~1/s + 5%."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tracekit.sampling.controlplane import ControlPlane
from tracekit.sampling.sampler import RULE_NAME_ATTRIBUTE, XRaySampler

RULES = Path(__file__).resolve().parents[2] / "sampling"
# (class, service, method, path, requests per second)
TRAFFIC = [
    ("health", "order-service", "GET", "/health", 10),
    ("payment", "order-service", "POST", "/api/payment/42", 10),
    ("orders", "order-service", "POST", "/orders/7", 30),
    ("other", "catalog", "GET", "/products/1", 30),
]
SECONDS = 60
Decide = Callable[[str, str, str], str | None]  # -> rule name when sampled


def stream(seed: int) -> Iterator[tuple[int, tuple[str, str, str, str, int]]]:
    """Requests of every class, shuffled within each second, as (second, request)."""
    rng = random.Random(seed)
    for second in range(SECONDS + 1):
        batch = [t for t in TRAFFIC for _ in range(t[4])]
        rng.shuffle(batch)
        for request in batch:
            yield second, request


def run(decide: Decide, poll_targets: Callable[[], None], clock: Any) -> tuple[Counter[str], dict]:
    """Second 0 warms up (borrowing, then the first quota); seconds 1..60 are measured."""
    totals: Counter[str] = Counter()
    per_second: dict[tuple[str, int], int] = Counter()
    start = clock.now
    current = 0
    for second, (kind, service, method, path, _) in stream(seed=11):
        if second != current:
            current = second
            clock.now = start + second
            if second % 10 == 1:
                poll_targets()
        clock.advance(1 / 100)
        name = decide(service, method, path)
        if name and second > 0:
            totals[kind] += 1
            per_second[kind, second] += 1
            assert name == EXPECTED_RULE[kind]
    return totals, per_second


EXPECTED_RULE = {"health": "Health checks (no sampling)", "payment": "High-priority transactions",
                 "orders": "API calls", "other": "Default"}


def check(totals: Counter[str], per_second: dict) -> None:
    assert totals["health"] == 0
    assert totals["payment"] == 10 * SECONDS
    for kind, reservoir, rate, rps in (("orders", 2, 0.1, 30), ("other", 1, 0.05, 30)):
        mean = SECONDS * (reservoir + rate * (rps - reservoir))
        sd = (SECONDS * (rps - reservoir) * rate * (1 - rate)) ** 0.5
        assert abs(totals[kind] - mean) < 5 * sd, (kind, totals[kind], mean)
        # the reservoir is honoured every single second
        assert all(per_second[kind, s] >= reservoir for s in range(1, SECONDS + 1)), kind


@pytest.fixture
def seeded_plane(clock: Any) -> Iterator[ControlPlane]:
    plane = ControlPlane(clock=clock).start()
    plane.load_dir(RULES)
    yield plane
    plane.stop()


def test_aws_xray_sdk_centralized_sampler(seeded_plane: ControlPlane, clock: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_xray_sdk.core.context import Context
    from aws_xray_sdk.core.daemon_config import DaemonConfig
    from aws_xray_sdk.core.sampling import connector, rule_poller
    from aws_xray_sdk.core.sampling import sampler as sdk_sampler

    fake_time = SimpleNamespace(time=clock)
    for module in (connector, rule_poller, sdk_sampler):
        monkeypatch.setattr(module, "time", fake_time)
    sdk = sdk_sampler.DefaultSampler()
    port = seeded_plane.url.rsplit(":", 1)[1]
    sdk.load_settings(DaemonConfig(f"127.0.0.1:{port}"), Context())
    sdk._started = True  # the test runs the pollers' work itself, on the simulated clock
    sdk._random.seed(5)
    sdk._rule_poller._refresh_cache()  # POST /GetSamplingRules through the SDK's botocore client
    assert [r.name for r in sdk._cache.rules] == list(EXPECTED_RULE.values())

    def decide(service: str, method: str, path: str) -> str | None:
        name = sdk.should_trace({"service": service, "method": method, "path": path,
                                 "host": "shop.example.com"})
        return name or None

    totals, per_second = run(decide, sdk._target_poller._do_work, clock)
    check(totals, per_second)
    assert sdk._cache.rules[2].reservoir.quota == 2  # quota came from /SamplingTargets


def test_tracekit_sampler(seeded_plane: ControlPlane, clock: Any) -> None:
    samplers = {
        service: XRaySampler(service, endpoint=seeded_plane.url, clock=clock,
                             rng=random.Random(5), background=False)
        for service in ("order-service", "catalog")
    }
    for sampler in samplers.values():
        sampler.poll_rules()

    def decide(service: str, method: str, path: str) -> str | None:
        result = samplers[service].should_sample(
            None, 1, "request", attributes={"http.request.method": method, "url.path": path,
                                            "server.address": "shop.example.com"})
        if not result.decision.is_sampled():
            return None
        return str(result.attributes[RULE_NAME_ATTRIBUTE])

    def poll() -> None:
        for sampler in samplers.values():
            sampler.poll_targets()

    totals, per_second = run(decide, poll, clock)
    check(totals, per_second)
    assert {s.rule.name: s.quota for s in samplers["order-service"]._central}["API calls"] == 2
