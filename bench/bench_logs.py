"""Cost of one structured JSON log line: tracekit vs Powertools Logger vs plain structlog.

Each variant writes the same event (message + 3 fields) as one JSON line to a null stream, so the
cost measured is formatting and correlation, not the terminal. tracekit is measured outside and
inside an active span (the span adds trace_id, span_id and xray_trace_id to the line). Variants run
interleaved for several rounds; the best round counts.
Run with: .venv-bench/bin/python bench/bench_logs.py
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from collections.abc import Callable

FIELDS = {"order_id": 1234, "amount": 99.5, "currency": "EUR"}


class _Null(io.TextIOBase):
    """Discards output, keeping the last line so each variant's JSON can be checked."""

    last = ""

    def write(self, text: str) -> int:
        if text.strip():
            self.last = text
        return len(text)

    def flush(self) -> None:
        return None


def tracekit_variant(null: _Null, in_span: bool) -> Callable[[], None]:
    import tracekit.logs as logs

    logs.configure(service="svc", stream=null, stdlib=False, env={})
    log = logs.get_logger("bench")
    if not in_span:
        return lambda: log.info("order placed", **FIELDS)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    span = TracerProvider().get_tracer("bench").start_span("request")
    context = trace.set_span_in_context(span)

    def line() -> None:
        from opentelemetry import context as ctx

        token = ctx.attach(context)
        log.info("order placed", **FIELDS)
        ctx.detach(token)

    return line


def powertools_variant(null: _Null) -> Callable[[], None]:
    from aws_lambda_powertools import Logger

    logger = Logger(service="svc", logger_handler=logging.StreamHandler(null), utc=True)
    return lambda: logger.info("order placed", **FIELDS)


def structlog_variant(null: _Null) -> Callable[[], None]:
    import structlog

    log = structlog.wrap_logger(
        structlog.WriteLogger(null),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    return lambda: log.info("order placed", **FIELDS)


def measure(line: Callable[[], None], count: int) -> float:
    line()
    start = time.perf_counter()
    for _ in range(count):
        line()
    return (time.perf_counter() - start) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    nulls = {name: _Null() for name in ("tk", "pt", "sl")}
    nulls["tk_span"] = nulls["tk"]  # tracekit's stream is process-wide: both variants share it
    variants = {
        "tracekit": (nulls["tk"], tracekit_variant(nulls["tk"], in_span=False)),
        "tracekit (in a span)": (nulls["tk_span"], tracekit_variant(nulls["tk_span"], True)),
        "structlog (plain JSON)": (nulls["sl"], structlog_variant(nulls["sl"])),
    }
    try:
        variants["powertools Logger"] = (nulls["pt"], powertools_variant(nulls["pt"]))
    except ImportError as exc:  # the CI smoke run has no bench environment
        print(f"powertools Logger: not installed ({exc.name}); run in .venv-bench (bench/env.sh)")
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (null, line) in variants.items():
            best[name] = min(best.get(name, float("inf")), measure(line, args.lines))
            assert json.loads(null.last)["order_id"] == 1234, null.last
    print(f"{args.lines} lines per round, best of {args.rounds} rounds")
    print(f"{'logger':<24} {'us/line':>8} {'tracekit ratio':>15}")
    for name, us in best.items():
        print(f"{name:<24} {us:>8.2f} {best['tracekit'] / us:>15.2f}")
    print("sample tracekit line (in a span):", nulls["tk_span"].last.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
