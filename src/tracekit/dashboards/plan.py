"""Plan, apply, export and drift: keep an account's dashboards and alarms in step with the specs.

Only dashboards and alarms whose names start with the prefix are read, changed or deleted. Alarms
are compared on the parameters PutMetricAlarm takes, with CloudWatch's defaults filled in (so an
alarm read back from DescribeAlarms equals the one that was put); dashboards on their parsed body.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tracekit._shared import planning
from tracekit._shared.planning import ApplyReport
from tracekit.dashboards.build import Desired

Kind = Literal["dashboard", "alarm"]
Action = Literal["create", "update", "delete"]
ALARM_FIELDS = (
    "AlarmName", "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions",
    "InsufficientDataActions", "MetricName", "Namespace", "Statistic", "ExtendedStatistic",
    "Dimensions", "Period", "Unit", "EvaluationPeriods", "DatapointsToAlarm", "Threshold",
    "ComparisonOperator", "TreatMissingData", "EvaluateLowSampleCountPercentile", "Metrics",
    "ThresholdMetricId",
)  # fmt: skip
"""What PutMetricAlarm takes (besides Tags, which it ignores on update) and DescribeAlarms returns."""
_DEFAULTS = {"ActionsEnabled": True, "TreatMissingData": "missing"}
DIFF_LINES = 12
"""Changed paths shown per resource; the rest are counted."""


@dataclass(frozen=True)
class Change:
    """One step of a plan: ``fields`` are the paths that differ, e.g. ``Threshold`` or
    ``widgets[3].properties.title``."""

    kind: Kind
    action: Action
    name: str
    desired: Mapping[str, Any] | None = None
    live: Mapping[str, Any] | None = None
    fields: tuple[str, ...] = ()
    blocked: str = ""

    def describe(self) -> str:
        """``~ update alarm 'x'`` and, indented below it, ``Threshold: 5.0 -> 2.0`` per path."""
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        head = f"{sign} {self.action} {self.kind} {self.name!r}"
        if self.action != "update" or self.live is None or self.desired is None:
            return head
        before, after = dict(_flatten(self.live)), dict(_flatten(self.desired))
        lines = [f"    {p}: {_show(before.get(p))} -> {_show(after.get(p))}"
                 for p in self.fields[:DIFF_LINES]]
        if len(self.fields) > DIFF_LINES:
            lines.append(f"    ... and {len(self.fields) - DIFF_LINES} more")
        return "\n".join([head, *lines])

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "action": self.action, "name": self.name,
                "fields": list(self.fields), "summary": self.describe()}


@dataclass(frozen=True)
class Plan:
    """The changes that make the account match the specs, in the order ``apply`` runs them."""

    changes: tuple[Change, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def blocked(self) -> Change | None:
        return None

    def to_json(self) -> dict[str, Any]:
        return {"changes": [c.to_json() for c in self.changes]}

    def text(self) -> str:
        return "\n".join(c.describe() for c in self.changes) or "no changes"


@dataclass
class Live:
    dashboards: dict[str, dict[str, Any]]
    alarms: dict[str, dict[str, Any]]


def live(client: Any, prefix: str) -> Live:
    """The account's dashboards and metric alarms whose names start with ``prefix``."""
    dashboards = {}
    for page in client.get_paginator("list_dashboards").paginate(DashboardNamePrefix=prefix):
        for entry in page.get("DashboardEntries", []):
            name = entry["DashboardName"]
            if name.startswith(prefix):
                body = client.get_dashboard(DashboardName=name)["DashboardBody"]
                dashboards[name] = json.loads(body)
    alarms = {}
    for page in client.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix,
                                                                 AlarmTypes=["MetricAlarm"]):
        for alarm in page.get("MetricAlarms", []):
            if alarm["AlarmName"].startswith(prefix):
                alarms[alarm["AlarmName"]] = normalize_alarm(alarm)
    return Live(dashboards, alarms)


def normalize_alarm(alarm: Mapping[str, Any]) -> dict[str, Any]:
    """PutMetricAlarm parameters: empty values and CloudWatch's defaults left out, the threshold
    a float, dimensions in name order; equal for what was put and what DescribeAlarms returns."""
    out: dict[str, Any] = {}
    for key in ALARM_FIELDS:
        value = alarm.get(key)
        if value in (None, [], "") or _DEFAULTS.get(key, object()) == value:
            continue
        if key == "Dimensions":
            value = _dimensions(value)
        elif key == "Metrics":
            value = [_query(q) for q in value]
        elif key == "Threshold":
            value = float(value)
        out[key] = value
    return out


def _dimensions(dims: list[Mapping[str, str]]) -> list[dict[str, str]]:
    return sorted(({"Name": d["Name"], "Value": d["Value"]} for d in dims), key=lambda d: d["Name"])


def _query(query: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in query.items() if v not in (None, "")}
    out.setdefault("ReturnData", True)
    stat = out.get("MetricStat")
    if stat:
        metric = dict(stat["Metric"])
        metric["Dimensions"] = _dimensions(metric.get("Dimensions", []))
        out["MetricStat"] = {**stat, "Metric": metric}
    return out


def make_plan(desired: Desired, current: Live) -> Plan:
    """Deletes first, then updates, then creates; dashboards before alarms within each."""
    deletes, updates, creates = [], [], []
    for kind, want, have in (("dashboard", desired.dashboards, current.dashboards),
                             ("alarm", {n: normalize_alarm(a) for n, a in desired.alarms.items()},
                              current.alarms)):
        for name in sorted(set(have) - set(want)):
            deletes.append(Change(kind, "delete", name, live=have[name]))  # type: ignore[arg-type]
        for name in sorted(want):
            if name not in have:
                creates.append(Change(kind, "create", name, desired=want[name]))  # type: ignore[arg-type]
                continue
            fields = _diff(want[name], have[name])
            if fields:
                updates.append(Change(kind, "update", name, want[name], have[name], fields))  # type: ignore[arg-type]
    return Plan(tuple(deletes + updates + creates))


def _diff(want: Mapping[str, Any], have: Mapping[str, Any]) -> tuple[str, ...]:
    before, after = dict(_flatten(have)), dict(_flatten(want))
    paths = dict.fromkeys([*after, *before])
    return tuple(p for p in paths if before.get(p, _MISSING) != after.get(p, _MISSING))


_MISSING = object()


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Leaf paths of a JSON value, e.g. ``widgets[0].properties.title`` (60 equals 60.0)."""
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _flatten(item, f"{path}[{index}]")
    else:
        yield path, value


def _show(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value)


def apply(client: Any, plan: Plan, *, attempts: int = 6,
          sleep: Callable[[float], None] = time.sleep) -> ApplyReport:
    """Run the plan; throttling is retried, the first other error stops it."""
    return planning.apply_changes(client, plan.changes, _calls, attempts=attempts, sleep=sleep)


def _calls(change: Change) -> list[planning.Call]:
    if change.kind == "dashboard":
        if change.action == "delete":
            return [lambda c: c.delete_dashboards(DashboardNames=[change.name])]
        body = json.dumps(change.desired, separators=(",", ":"))
        return [lambda c: _put_dashboard(c, change.name, body)]
    if change.action == "delete":
        return [lambda c: c.delete_alarms(AlarmNames=[change.name])]
    alarm = dict(change.desired or {})
    return [lambda c: c.put_metric_alarm(**alarm)]


def _put_dashboard(client: Any, name: str, body: str) -> None:
    """PutDashboard answers a body with errors (not stored) or warnings (stored, but parts may not
    render) with messages rather than an error: either stops the apply, with CloudWatch's words."""
    messages = client.put_dashboard(DashboardName=name, DashboardBody=body).get(
        "DashboardValidationMessages") or []
    if messages:
        raise ValueError("; ".join(f"{m.get('DataPath', '')}: {m.get('Message', '')}" for m in messages))


def export(client: Any, prefix: str) -> dict[str, Any]:
    """The live dashboards and alarms as a spec document (API form) that plans to no changes."""
    current = live(client, prefix)
    return {
        "dashboards": [{"DashboardName": name, "DashboardBody": body}
                       for name, body in sorted(current.dashboards.items())],
        "alarms": [current.alarms[n] for n in sorted(current.alarms)],
    }
