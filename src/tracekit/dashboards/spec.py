"""The observability spec files: per service, what its dashboard shows, what alarms it and which
objectives (SLOs) it keeps; or, as ``export`` writes them, dashboards and alarms in API form.

Every problem is reported as ``file:line: field: problem (accepted: ...)``. ``${name}`` in a string
is replaced by a parameter (``--param name=value``), e.g. the SNS topic that alarms notify.
Metric names, units and dimensions are not part of a spec: they come from
:mod:`tracekit.metrics.names` and the sidecar, through :mod:`tracekit.dashboards.build`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracekit._shared import specfile
from tracekit._shared.specfile import KeyPath, Problem, at
from tracekit.metrics import names

FILE_SUFFIXES = (".yaml", ".yml", ".json")
PROMETHEUS_NAMESPACE = "ECS/ContainerInsights/Prometheus"
"""Where the CloudWatch agent puts the Prometheus metrics it scrapes from ECS tasks."""
PERIODS = (10, 30, 60)
"""Periods below one minute that CloudWatch accepts; longer ones are multiples of 60 s."""
MAX_ALARM_SECONDS = 86_400
"""Period x EvaluationPeriods for periods under one hour (PutMetricAlarm)."""
SERVICE_KEYS = ("service", "namespace", "region", "period", "actions", "alarms", "routes", "lambda",
                "ecs", "sidecar", "step_functions", "logs")
RAW_KEYS = ("dashboards", "alarms")
_PARAM = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Limit:
    """Alarm when the value is above ``above`` for ``periods`` consecutive periods."""

    above: float
    periods: int = 1


@dataclass(frozen=True)
class Objective:
    """``target`` percent of requests succeed (availability) or are faster than ``below_ms``."""

    kind: str
    target: float
    below_ms: float | None = None

    @property
    def budget(self) -> float:
        """The error budget as a fraction, e.g. 0.001 for 99.9%."""
        return 1 - self.target / 100


@dataclass(frozen=True)
class Route:
    route: str
    method: str
    server_error_rate: Limit | None
    latency_p99: Limit | None
    objectives: tuple[Objective, ...]
    location: str


@dataclass(frozen=True)
class Lambda:
    function: str
    errors: Limit | None
    throttles: Limit | None


@dataclass(frozen=True)
class Sidecar:
    namespace: str
    dimensions: tuple[tuple[str, str], ...]
    dropped: Limit | None


@dataclass(frozen=True)
class Service:
    """One service's spec, as read from its file."""

    service: str
    location: str
    namespace: str = names.DEFAULT_NAMESPACE
    region: str | None = None
    period: int = 60
    actions: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    function: Lambda | None = None
    ecs: tuple[str, str] | None = None
    """(cluster, service) for Container Insights."""
    sidecar: Sidecar | None = None
    state_machines: tuple[str, ...] = ()
    log_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Raw:
    """A dashboard or an alarm in API form (what ``export`` writes)."""

    kind: str
    name: str
    definition: Mapping[str, Any]
    location: str


@dataclass
class SpecSet:
    services: list[Service] = field(default_factory=list)
    raw: list[Raw] = field(default_factory=list)


def check(paths: Iterable[str | Path], params: Mapping[str, str]) -> tuple[SpecSet, list[Problem]]:
    """Read every file; return what could be read and every problem found.

    A directory without spec files is a problem: plan and apply against a wrong directory would
    otherwise delete every dashboard and alarm with the prefix.
    """
    specs, problems = SpecSet(), []
    for item in map(Path, paths):
        files = specfile.files_in(item, FILE_SUFFIXES)
        if not files:
            problems.append(Problem(str(item), 1, "(directory)", "holds no spec files",
                                    "a directory with .yaml, .yml or .json files"))
        for path in files:
            problems += _read_file(path, params, specs)
    return specs, problems


def _read_file(path: Path, params: Mapping[str, str], specs: SpecSet) -> list[Problem]:
    try:
        doc, lines, problems = specfile.read(path)
    except specfile.SyntaxProblem as exc:
        return [exc.problem]
    reader = _Reader(str(path), lines, problems, params)
    doc = reader.substitute(doc, ())
    if isinstance(doc, dict) and "service" not in doc and set(doc) & set(RAW_KEYS):
        reader.keys(doc, (), RAW_KEYS)
        specs.raw += reader.raw(doc)
    elif isinstance(doc, dict):
        service = reader.service(doc)
        if service is not None:
            specs.services.append(service)
    else:
        problems.append(Problem(str(path), 1, "(document)", "is not a mapping",
                                "a mapping with 'service' (a spec) or 'dashboards'/'alarms' (export)"))
    return problems


@dataclass
class _Reader:
    """Typed access to one document that records a located problem for every bad value."""

    file: str
    lines: Mapping[KeyPath, int]
    problems: list[Problem]
    params: Mapping[str, str]

    def where(self, path: KeyPath) -> str:
        """``file:line`` of ``path`` (or its nearest parent)."""
        found = at(self.file, self.lines, path, "", "")
        return f"{found.file}:{found.line}"

    def fail(self, path: KeyPath, problem: str, accepted: str = "") -> None:
        fld = ".".join(str(p) for p in path) or "(document)"
        self.problems.append(at(self.file, self.lines, path, fld, problem, accepted))

    def substitute(self, value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {k: self.substitute(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str):
            return _PARAM.sub(lambda m: self._param(m[1], path), value)
        return value

    def _param(self, name: str, path: KeyPath) -> str:
        if name not in self.params:
            self.fail(path, f"parameter ${{{name}}} is not set", f"--param {name}=VALUE")
            return f"${{{name}}}"
        return self.params[name]

    def keys(self, raw: Mapping[str, Any], path: KeyPath, allowed: tuple[str, ...]) -> None:
        for key in raw:
            if key not in allowed:
                self.fail((*path, key), "unknown key", ", ".join(allowed))

    def mapping(self, value: Any, path: KeyPath, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping", "keys " + ", ".join(allowed))
            return None
        self.keys(value, path, allowed)
        return value

    def text(self, raw: Mapping[str, Any], key: str, path: KeyPath, default: str | None = None,
             pattern: str = r".{1,255}", accepted: str = "1-255 characters") -> str | None:
        value = raw.get(key, default)
        if value is None:
            if default is None:
                self.fail((*path, key), "is required", accepted)
            return None
        if not isinstance(value, str) or not re.fullmatch(pattern, value, re.S):
            self.fail((*path, key), f"{value!r} is not valid", accepted)
            return None
        return value

    def number(self, raw: Mapping[str, Any], key: str, path: KeyPath, low: float, high: float | None,
               default: float | None = None, integer: bool = False) -> float | None:
        value = raw.get(key, default)
        kind = "an integer" if integer else "a number"
        accepted = f"{kind} from {low:g}" + (f" to {high:g}" if high is not None else " up")
        if value is None:
            self.fail((*path, key), "is required", accepted)
            return None
        ok_type = not isinstance(value, bool) and (
            isinstance(value, int) if integer else isinstance(value, int | float) and math.isfinite(value))
        if not ok_type or value < low or (high is not None and value > high):
            self.fail((*path, key), f"{value!r} is out of range" if ok_type else
                      f"must be {kind}, got {value!r}", accepted)
            return None
        return float(value)

    def strings(self, value: Any, path: KeyPath, accepted: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(path, "must be a list of strings", accepted)
            return ()
        return tuple(value)

    def limit(self, raw: Any, path: KeyPath, default: Limit | None,
              high: float | None = None) -> Limit | None:
        """``{above: N, periods: M}``; ``false`` turns a default alarm off."""
        if raw is False:
            return None
        value = self.mapping(raw, path, ("above", "periods"))
        if value is None:
            return default
        base = default or Limit(0.0)
        above = self.number(value, "above", path, 0, high, base.above)
        periods = self.number(value, "periods", path, 1, 100, base.periods, integer=True)
        if above is None or periods is None:
            return default
        return Limit(above, int(periods))

    # -- a service spec --------------------------------------------------------------------------

    def service(self, doc: Mapping[str, Any]) -> Service | None:
        self.keys(doc, (), SERVICE_KEYS)
        before = len(self.problems)
        service = self.text(doc, "service", (), pattern=r"[^\x00-\x1f]{1,1024}",
                            accepted="the ServiceName the application runs with (OTEL_SERVICE_NAME)")
        namespace = self.text(doc, "namespace", (), names.DEFAULT_NAMESPACE,
                              r"(?!AWS/)[a-zA-Z0-9._#:/-]{1,255}",
                              "the metrics namespace the application uses: 1-255 of [a-zA-Z0-9._#:/-]")
        region = self.text(doc, "region", (), "", r"([a-z]{2}(-[a-z]+)+-\d)?", "an AWS region")
        period = self.number(doc, "period", (), 10, 86_400, 60, integer=True)
        if period is not None and period not in PERIODS and period % 60:
            self.fail(("period",), f"{period:g} is not a CloudWatch period", "10, 30, 60 or a multiple of 60")
        actions = self.strings(doc.get("actions"), ("actions",), "SNS topic (or other action) ARNs")
        for i, action in enumerate(actions):
            if not action.startswith(("arn:", "${")):
                self.fail(("actions", i), f"{action!r} is not an ARN", "arn:aws:sns:REGION:ACCOUNT:TOPIC")
        defaults = self.mapping(doc.get("alarms"), ("alarms",), ("server_error_rate", "latency_p99")) or {}
        error_default = self.limit(defaults.get("server_error_rate"), ("alarms", "server_error_rate"),
                                   None, 100)
        latency_default = self.limit(defaults.get("latency_p99"), ("alarms", "latency_p99"), None)
        routes = self._routes(doc.get("routes"), error_default, latency_default)
        built = Service(
            service=service or "", location=self.where(()), namespace=namespace or "",
            region=region or None, period=int(period or 60), actions=actions, routes=routes,
            function=self._lambda(doc.get("lambda")), ecs=self._ecs(doc.get("ecs")),
            sidecar=self._sidecar(doc.get("sidecar")),
            state_machines=self._state_machines(doc.get("step_functions")),
            log_groups=self._logs(doc.get("logs")),
        )
        return built if len(self.problems) == before else None

    def _routes(self, raw: Any, error: Limit | None, latency: Limit | None) -> tuple[Route, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.fail(("routes",), "must be a list", "a list of {route, method, alarms, slo}")
            return ()
        routes = []
        for i, item in enumerate(raw):
            path: KeyPath = ("routes", i)
            value = self.mapping(item, path, ("route", "method", "alarms", "slo"))
            if value is None:
                self.fail(path, "is empty", "a mapping with route and method")
                continue
            route = self.text(value, "route", path, accepted="the route template tracekit records, "
                              "e.g. /orders/{id} (FastAPI) or /orders/<id> (Flask)")
            method = self.text(value, "method", path, pattern=r"[A-Z]{1,16}",
                               accepted="an HTTP method in capitals, e.g. GET")
            alarms = self.mapping(value.get("alarms"), (*path, "alarms"),
                                  ("server_error_rate", "latency_p99")) or {}
            routes.append(Route(
                route or "", method or "",
                self.limit(alarms.get("server_error_rate"), (*path, "alarms", "server_error_rate"),
                           error, 100),
                self.limit(alarms.get("latency_p99"), (*path, "alarms", "latency_p99"), latency),
                self._objectives(value.get("slo"), (*path, "slo")),
                self.where(path),
            ))
        return tuple(routes)

    def _objectives(self, raw: Any, path: KeyPath) -> tuple[Objective, ...]:
        value = self.mapping(raw, path, ("availability", "latency"))
        if value is None:
            return ()
        objectives = []
        accepted = "a percentage above 0 and below 100, e.g. 99.9"
        if "availability" in value:
            target = self.number(value, "availability", path, 0, 100)
            if target is not None and not 0 < target < 100:
                self.fail((*path, "availability"), f"{target:g} leaves no error budget", accepted)
            elif target is not None:
                objectives.append(Objective("availability", target))
        latency = self.mapping(value.get("latency"), (*path, "latency"), ("below_ms", "percent"))
        if latency is not None:
            below = self.number(latency, "below_ms", (*path, "latency"), 1, None)
            target = self.number(latency, "percent", (*path, "latency"), 0, 100)
            if target is not None and not 0 < target < 100:
                self.fail((*path, "latency", "percent"), f"{target:g} leaves no error budget", accepted)
            elif target is not None and below is not None:
                objectives.append(Objective("latency", target, below))
        return tuple(objectives)

    def _lambda(self, raw: Any) -> Lambda | None:
        value = self.mapping(raw, ("lambda",), ("function", "alarms"))
        if value is None:
            return None
        function = self.text(value, "function", ("lambda",), pattern=r"[a-zA-Z0-9_-]{1,64}",
                             accepted="a Lambda function name (1-64 of [a-zA-Z0-9_-])")
        alarms = self.mapping(value.get("alarms"), ("lambda", "alarms"), ("errors", "throttles")) or {}
        errors = self.limit(alarms.get("errors"), ("lambda", "alarms", "errors"), Limit(0))
        throttles = self.limit(alarms.get("throttles"), ("lambda", "alarms", "throttles"), Limit(0))
        return Lambda(function or "", errors, throttles)

    def _ecs(self, raw: Any) -> tuple[str, str] | None:
        value = self.mapping(raw, ("ecs",), ("cluster", "service"))
        if value is None:
            return None
        cluster = self.text(value, "cluster", ("ecs",), accepted="the ECS cluster name")
        service = self.text(value, "service", ("ecs",), accepted="the ECS service name")
        return (cluster or "", service or "")

    def _sidecar(self, raw: Any) -> Sidecar | None:
        value = self.mapping(raw, ("sidecar",), ("namespace", "dimensions", "alarms"))
        if value is None:
            return None
        namespace = self.text(value, "namespace", ("sidecar",), PROMETHEUS_NAMESPACE,
                              accepted="the namespace the CloudWatch agent writes the scraped metrics to")
        dims = value.get("dimensions")
        accepted = "a mapping of 1-30 dimensions, as in the agent's metric_declaration"
        if not isinstance(dims, dict) or not 1 <= len(dims) <= 30 or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in dims.items()):
            self.fail(("sidecar", "dimensions"), "is required" if dims is None else "is not valid", accepted)
            dims = {}
        alarms = self.mapping(value.get("alarms"), ("sidecar", "alarms"), ("dropped",)) or {}
        dropped = self.limit(alarms.get("dropped"), ("sidecar", "alarms", "dropped"), Limit(0))
        return Sidecar(namespace or "", tuple(sorted(dims.items())), dropped)

    def _state_machines(self, raw: Any) -> tuple[str, ...]:
        arns = self.strings(raw, ("step_functions",), "state machine ARNs")
        for i, arn in enumerate(arns):
            if not re.fullmatch(r"arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[\w-]{1,80}", arn):
                self.fail(("step_functions", i), f"{arn!r} is not a state machine ARN",
                          "arn:aws:states:REGION:ACCOUNT:stateMachine:NAME")
        return arns

    def _logs(self, raw: Any) -> tuple[str, ...]:
        value = self.mapping(raw, ("logs",), ("groups",))
        if value is None:
            return ()
        groups = self.strings(value.get("groups"), ("logs", "groups"), "log group names")
        if not groups:
            self.fail(("logs", "groups"), "is required", "the log groups of the service's JSON logs")
        return groups

    # -- the API form (export) -------------------------------------------------------------------

    def raw(self, doc: Mapping[str, Any]) -> list[Raw]:
        found: list[Raw] = []
        for kind, name_key, accepted in (
            ("dashboard", "DashboardName", "{DashboardName, DashboardBody} (as GetDashboard returns)"),
            ("alarm", "AlarmName", "the parameters of PutMetricAlarm"),
        ):
            items = doc.get(kind + "s") or []
            if not isinstance(items, list):
                self.fail((kind + "s",), "must be a list", accepted)
                continue
            for i, item in enumerate(items):
                path: KeyPath = (kind + "s", i)
                name = item.get(name_key) if isinstance(item, dict) else None
                if not isinstance(name, str) or not name:
                    self.fail(path, f"has no {name_key}", accepted)
                    continue
                if kind == "dashboard":
                    self.keys(item, path, ("DashboardName", "DashboardBody"))
                    body = item.get("DashboardBody")
                    if not isinstance(body, dict) or not isinstance(body.get("widgets"), list):
                        self.fail((*path, "DashboardBody"), "must be a mapping with widgets",
                                  "a dashboard body (CloudWatch dashboard body structure)")
                        continue
                    item = body
                found.append(Raw(kind, name, item, self.where(path)))
        return found
