"""What a rule set records per month for a traffic mix, and what X-Ray charges for it.

Per rule: ``min(rps, ReservoirSize) + FixedRate * max(0, rps - ReservoirSize)`` traces per
second: the reservoir is per account per second in X-Ray centralized sampling.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracekit._shared.settings import ConfigError
from tracekit.sampling.matching import SamplingRequest, matches
from tracekit.sampling.rules import Rule

SECONDS_PER_MONTH = 30 * 86_400
TRAFFIC_KEYS = {"service": "service", "service_type": "service_type", "host": "host",
                "method": "method", "path": "path"}


@dataclass(frozen=True)
class TrafficClass:
    """A kind of request and the share of all requests it makes up."""

    request: SamplingRequest
    share: float


DEFAULT_MIX = (TrafficClass(SamplingRequest(), 1.0),)
"""No traffic file: requests nothing is known about, which only catch-all rules (Default) match."""


@dataclass(frozen=True)
class RuleCost:
    rule: str
    requests_per_second: float
    traces_per_second: float

    @property
    def traces_per_month(self) -> float:
        return self.traces_per_second * SECONDS_PER_MONTH


@dataclass(frozen=True)
class Estimate:
    rows: tuple[RuleCost, ...]
    price_per_million: float
    free_traces: int

    @property
    def traces_per_month(self) -> float:
        return sum(r.traces_per_month for r in self.rows)

    @property
    def monthly_cost(self) -> float:
        billable = max(0.0, self.traces_per_month - self.free_traces)
        return billable / 1e6 * self.price_per_million

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [{"rule": r.rule, "requests_per_second": r.requests_per_second,
                       "traces_per_second": r.traces_per_second,
                       "traces_per_month": round(r.traces_per_month)} for r in self.rows],
            "traces_per_month": round(self.traces_per_month),
            "price_per_million": self.price_per_million,
            "free_traces": self.free_traces,
            "monthly_cost_usd": round(self.monthly_cost, 2),
        }

    def text(self) -> str:
        lines = [f"{'rule':32} {'req/s':>10} {'traces/s':>10} {'traces/month':>14}"]
        lines += [f"{r.rule:32} {r.requests_per_second:>10.2f} {r.traces_per_second:>10.2f} "
                  f"{r.traces_per_month:>14,.0f}" for r in self.rows]
        lines.append(f"total {self.traces_per_month:,.0f} traces/month: "
                     f"${self.monthly_cost:,.2f}/month at ${self.price_per_million:.2f} per "
                     f"million after {self.free_traces:,} free")
        return "\n".join(lines)


def estimate(rules: Sequence[Rule], mix: Sequence[TrafficClass], rps: float,
             price_per_million: float, free_traces: int) -> Estimate:
    """Route each traffic class to its first matching rule and apply that rule's rates."""
    load = {r.name: 0.0 for r in rules}
    for item in mix:
        rule = next((r for r in rules if matches(r, item.request)), None)
        if rule is not None:
            load[rule.name] += rps * item.share
    rows = []
    for rule in rules:
        rate = load[rule.name]
        kept = min(rate, rule.reservoir_size) + rule.fixed_rate * max(0.0, rate - rule.reservoir_size)
        rows.append(RuleCost(rule.name, rate, kept))
    return Estimate(tuple(rows), price_per_million, free_traces)


def load_traffic(path: str | Path) -> tuple[TrafficClass, ...]:
    """Read ``requests: [{service, method, path, host, service_type, share}]``; shares sum to at
    most 1 and the rest of the traffic is requests nothing is known about.

    A file that cannot be parsed or a bad entry raises :class:`ConfigError` naming the file and
    the field."""
    doc = _parse(path, Path(path).read_text(encoding="utf-8"))
    items = doc.get("requests") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{path}: requests", items, "a list of request classes")
    mix = [_traffic_class(path, i, item) for i, item in enumerate(items)]
    total = sum(t.share for t in mix)
    if total > 1 + 1e-9:
        raise ConfigError(f"{path}: requests: sum of share", round(total, 9), "at most 1")
    rest = (TrafficClass(SamplingRequest(), 1 - total),) if total < 1 - 1e-9 else ()
    return (*mix, *rest)


def _parse(path: str | Path, text: str) -> Any:
    if str(path).endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError("--traffic", str(path), f"a JSON document ({exc})") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("--traffic", str(path), f"YAML ({' '.join(str(exc).split())})") from None


def _traffic_class(path: str | Path, index: int, item: object) -> TrafficClass:
    where = f"{path}: requests[{index}]"
    accepted = ", ".join([*TRAFFIC_KEYS, "share"])
    if not isinstance(item, dict):
        raise ConfigError(where, item, f"a mapping of {accepted}")
    unknown = [k for k in item if k not in TRAFFIC_KEYS and k != "share"]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", item[unknown[0]], f"only the keys {accepted}")
    share = item.get("share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ConfigError(f"{where}.share", share, "a number from 0 to 1")
    fields: dict[str, Any] = {TRAFFIC_KEYS[k]: str(v) for k, v in item.items() if k in TRAFFIC_KEYS}
    return TrafficClass(SamplingRequest(**fields), float(share))
