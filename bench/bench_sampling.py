"""Cost of one head-sampling decision: tracekit's XRaySampler against aws-xray-sdk's centralized
DefaultSampler, both holding the rule set of sampling/ fetched from tracekit's local control plane.

The request mix is the conformance test's (health, payment, orders, other). Variants run
interleaved for several rounds; the median per-call time is reported.
Run with: .venv-bench/bin/python bench/bench_sampling.py   (or .venv/bin/python)
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from tracekit.sampling.controlplane import ControlPlane
from tracekit.sampling.sampler import XRaySampler

RULES = Path(__file__).resolve().parents[1] / "sampling"
MIX = [("order-service", "GET", "/health")] * 10 + [("order-service", "POST", "/api/payment/1")] * 10
MIX += [("order-service", "POST", "/orders/7")] * 30 + [("catalog", "GET", "/products/1")] * 30
CALLS = 20_000
ROUNDS = 5


def tracekit_variant(url: str) -> Callable[[str, str, str], object]:
    samplers = {s: XRaySampler(s, endpoint=url, background=False) for s in ("order-service", "catalog")}
    for sampler in samplers.values():
        sampler.poll_rules()

    def decide(service: str, method: str, path: str) -> object:
        attrs = {"http.request.method": method, "url.path": path, "server.address": "shop"}
        return samplers[service].should_sample(None, 1, "request", attributes=attrs)

    return decide


def sdk_variant(url: str) -> Callable[[str, str, str], object]:
    from aws_xray_sdk.core.context import Context
    from aws_xray_sdk.core.daemon_config import DaemonConfig
    from aws_xray_sdk.core.sampling.sampler import DefaultSampler

    sdk = DefaultSampler()
    sdk.load_settings(DaemonConfig("127.0.0.1:" + url.rsplit(":", 1)[1]), Context())
    sdk._started = True  # no poller threads: the benchmark measures decisions only
    sdk._rule_poller._refresh_cache()

    def decide(service: str, method: str, path: str) -> object:
        return sdk.should_trace({"service": service, "method": method, "path": path, "host": "shop"})

    return decide


def measure(decide: Callable[[str, str, str], object], requests: list[tuple[str, str, str]]) -> float:
    start = time.perf_counter()
    for service, method, path in requests:
        decide(service, method, path)
    return (time.perf_counter() - start) / len(requests) * 1e6


def main() -> None:
    plane = ControlPlane().start()
    plane.load_dir(RULES)
    variants = {"tracekit XRaySampler": tracekit_variant(plane.url),
                "aws-xray-sdk DefaultSampler": sdk_variant(plane.url)}
    rng = random.Random(1)
    requests = [rng.choice(MIX) for _ in range(CALLS)]
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name in random.sample(list(variants), len(variants)):
            results[name].append(measure(variants[name], requests))
    plane.stop()
    for name, times in results.items():
        print(f"{name:28} median {statistics.median(times):6.2f} us/decision "
              f"(min {min(times):.2f}, {ROUNDS} rounds x {CALLS})")


if __name__ == "__main__":
    main()
