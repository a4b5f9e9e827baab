"""Cost of recording and serialising metrics: tracekit's EMF path vs aws-embedded-metrics and
Powertools Metrics, on the same workload in one run.

Workload: INVOCATIONS invocations, each recording 10 metrics (5 counts, 5 timings) with 3 dimensions
plus a service dimension, then flushing one EMF document to stdout (replaced by a null stream, so
the cost measured is the library's, not the terminal's). Each variant runs several interleaved
rounds; the best round counts. Run with: .venv-bench/bin/python bench/bench_metrics.py
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator

GOAL = 0.5
"""tracekit's µs per metric must be at most this fraction of the faster peer's."""
COUNTS = [f"count_{i}" for i in range(5)]
TIMINGS = [f"timing_{i}" for i in range(5)]
DIMS = {"operation": "checkout", "region": "eu-west-1", "tier": "gold"}


class _Null(io.TextIOBase):
    """A stdout stand-in that keeps the last line (checked once) and discards the rest."""

    last = ""

    def write(self, text: str) -> int:
        if text.strip():  # print() writes the newline separately
            self.last = text
        return len(text)


@contextlib.contextmanager
def _stdout(null: _Null) -> Iterator[None]:
    saved, sys.stdout = sys.stdout, null
    try:
        yield
    finally:
        sys.stdout = saved


def tracekit_variant() -> Callable[[], None]:
    import tracekit.metrics as tk

    tk.configure(
        "Bench", outputs=["stdout"], default_dimensions={"service": "svc"}, flush_interval=0, env={}
    )

    def invocation() -> None:
        with tk.scope(dimensions=DIMS):
            for name in COUNTS:
                tk.count(name, 1)
            for name in TIMINGS:
                tk.observe(name, 12.5)

    return invocation


def embedded_metrics_variant() -> Callable[[], None]:
    os.environ["AWS_EMF_ENVIRONMENT"] = "Lambda"  # stdout sink, no agent or metadata lookups
    from aws_embedded_metrics.logger.metrics_logger_factory import create_metrics_logger

    def invocation() -> None:
        logger = create_metrics_logger()
        logger.set_namespace("Bench")
        logger.set_dimensions({"service": "svc", **DIMS})
        for name in COUNTS:
            logger.put_metric(name, 1, "Count")
        for name in TIMINGS:
            logger.put_metric(name, 12.5, "Milliseconds")
        logger.flush_sync()

    return invocation


def powertools_variant() -> Callable[[], None]:
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace="Bench", service="svc")

    def invocation() -> None:
        for key, value in DIMS.items():
            metrics.add_dimension(key, value)
        for name in COUNTS:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        for name in TIMINGS:
            metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=12.5)
        metrics.flush_metrics()

    return invocation


def measure(invocation: Callable[[], None], count: int, null: _Null) -> float:
    """Seconds for ``count`` invocations with stdout discarded."""
    with _stdout(null):
        invocation()  # warm up: imports, environment detection, caches
        gc.collect()
        start = time.perf_counter()
        for _ in range(count):
            invocation()
        return time.perf_counter() - start


def check_document(null: _Null) -> None:
    """Every variant must have produced the same 10 metrics and 4 dimensions."""
    doc = json.loads(null.last)
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert sorted(m["Name"] for m in directive["Metrics"]) == sorted(COUNTS + TIMINGS), directive
    assert sorted(directive["Dimensions"][0]) == sorted(["service", *DIMS]), directive


def red_cost(count: int) -> float:
    """µs per ``record_request`` call (the web middleware's per-request hook), flushes included."""
    import tracekit.metrics as tk

    with _stdout(_Null()):
        start = time.perf_counter()
        for i in range(count):
            tk.record_request("/items/{id}", "GET", 200 if i % 10 else 500, 12.5)
        tk.flush()
        return (time.perf_counter() - start) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    variants = {"tracekit": tracekit_variant()}
    for name, make in (
        ("aws-embedded-metrics", embedded_metrics_variant),
        ("powertools", powertools_variant),
    ):
        try:
            variants[name] = make()
        except ImportError as exc:  # the CI smoke run has no bench environment
            print(f"{name}: not installed ({exc.name}); run in .venv-bench (bench/env.sh)")
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, invocation in variants.items():
            null = _Null()
            seconds = measure(invocation, args.invocations, null)
            check_document(null)
            best[name] = min(best.get(name, seconds), seconds)
    per_metric = {name: s / (args.invocations * 10) * 1e6 for name, s in best.items()}
    print(
        f"{args.invocations} invocations x 10 metrics x 4 dimensions, best of {args.rounds} rounds"
    )
    print(f"{'library':<22} {'us/metric':>10} {'us/invocation':>14} {'tracekit ratio':>15}")
    for name, us in per_metric.items():
        ratio = per_metric["tracekit"] / us
        print(f"{name:<22} {us:>10.2f} {us * 10:>14.1f} {ratio:>15.2f}")
    peers = [v for k, v in per_metric.items() if k != "tracekit"]
    if peers:
        ratio = per_metric["tracekit"] / min(peers)
        verdict = "met" if ratio <= GOAL else "NOT met"
        print(f"tracekit / faster peer = {ratio:.2f} (goal <= {GOAL}): {verdict}")
    print(f"record_request (RED hook): {red_cost(100_000):.2f} us per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
