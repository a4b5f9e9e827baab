"""An OpenTelemetry sampler that implements X-Ray centralized sampling.

Rules come from X-Ray (``GetSamplingRules`` every 5 minutes) and quotas from ``GetSamplingTargets``
(every 10 s, with each rule's statistics), both polled by ONE lazily started daemon thread, never on
the request path. Until rules arrive, when X-Ray cannot be reached, or when the cached rules are
over an hour old, the local rules decide (ReservoirSize then means "per second in this process").
Per decision: take from an unexpired reservoir quota; without one, borrow 1 per second when the
rule has a reservoir; otherwise sample with FixedRate (or an active BoostRate).

The core provider consults this sampler only for root spans; parent decisions are its business.
Endpoints are called with plain unsigned JSON POSTs, as SDKs call the daemon's signing proxy, so
neither boto3 nor PyYAML is imported here (rule *files* given as ``local_rules`` need PyYAML).
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from tracekit._shared import stats
from tracekit.sampling.matching import SamplingRequest, compile_rule
from tracekit.sampling.rules import DEFAULT_RULE, Rule, RuleSet

RULE_NAME_ATTRIBUTE = "aws.xray.sampling_rule_name"
RULES_INTERVAL = 300.0
TARGETS_INTERVAL = 10.0
RULES_TTL = 3600.0
"""Centralized rules not refreshed for this long are ignored (the local rules decide)."""
MAX_BACKOFF = 300.0
MAX_DOCUMENTS = 25
"""Statistics documents per GetSamplingTargets call (the API's limit); the rest wait their turn."""


@dataclass
class _RuleState:
    """A rule plus its reservoir, current target and the statistics not yet reported."""

    rule: Rule
    fixed_rate: float
    match: Callable[[SamplingRequest], bool] = field(init=False, repr=False)
    quota: int | None = None
    quota_ttl: float = 0.0
    interval: float = TARGETS_INTERVAL
    last_report: float = -math.inf
    boost_rate: float = 0.0
    boost_ttl: float = 0.0
    this_second: int = -1
    taken: int = 0
    borrowed_this_second: int = 0
    requests: int = 0
    sampled: int = 0
    borrowed: int = 0
    total: int = 0
    anomalies: int = 0
    sampled_anomalies: int = 0

    def __post_init__(self) -> None:
        self.match = compile_rule(self.rule)

    @classmethod
    def local(cls, rule: Rule) -> _RuleState:
        """A local rule: its ReservoirSize is a permanent per-process quota."""
        return cls(rule, rule.fixed_rate, quota=rule.reservoir_size, quota_ttl=math.inf)

    def inherit(self, old: _RuleState) -> None:
        """Keep quota, boost and pending statistics across a rules refresh."""
        for name in ("quota", "quota_ttl", "interval", "last_report", "boost_rate", "boost_ttl",
                     "this_second", "taken", "borrowed_this_second", *_PENDING):
            setattr(self, name, getattr(old, name))

    def forget_client_state(self) -> None:
        """In a forked worker: the quota and the counts belong to the parent's ClientID."""
        self.quota, self.quota_ttl = None, 0.0
        for name in _PENDING:
            setattr(self, name, 0)


_PENDING = ("requests", "sampled", "borrowed", "total", "anomalies", "sampled_anomalies")
"""Statistics counted since the last GetSamplingTargets report."""


class XRaySampler(Sampler):
    """X-Ray centralized sampling for root spans, with local rules as the fallback."""

    def __init__(
        self,
        service_name: str,
        origin: str | None = None,
        endpoint: str | None = None,
        local_rules: str | Path | RuleSet | Iterable[Rule] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        background: bool = True,
        timeout: float = 2.0,
        rules_interval: float = RULES_INTERVAL,
        targets_interval: float = TARGETS_INTERVAL,
    ) -> None:
        self.service_name = service_name
        self.origin = origin
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.client_id = os.urandom(12).hex()
        self._clock = clock
        self._rng = rng or random.Random()
        self._background = background
        self._timeout = timeout
        self._rules_interval = rules_interval
        self._targets_interval = targets_interval
        self._lock = threading.Lock()
        self._local = [_RuleState.local(r) for r in _local_rules(local_rules)]
        self._central: list[_RuleState] = []
        self._uses_attributes = any(s.rule.attributes for s in self._local)
        """Only collect string attributes when some rule matches on Attributes."""
        self._fetched_at: float | None = None
        self._modification_seen = 0.0
        """The last LastRuleModification that triggered a refresh: with a client clock behind
        X-Ray's, comparing with ``_fetched_at`` alone would refetch on every targets poll."""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        _forget_in_child(self)

    # -- decisions (request path) ------------------------------------------------------------

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent_state = get_current_span(parent_context).get_span_context().trace_state
        try:
            self._ensure_poller()
            now = self._clock()
            state = self._select(self._request(attributes or {}), now)
            sampled = self._decide(state, now)
        except Exception as exc:
            stats.report("sampling.decision", exc)
            return SamplingResult(Decision.DROP, None, parent_state)
        if sampled:
            decision = Decision.RECORD_AND_SAMPLE
        elif state.rule.boost is not None:
            decision = Decision.RECORD_ONLY  # its end still feeds the anomaly statistics
        else:
            return SamplingResult(Decision.DROP, None, parent_state)
        return SamplingResult(decision, {RULE_NAME_ATTRIBUTE: state.rule.name}, parent_state)

    def get_description(self) -> str:
        return f"XRaySampler{{service={self.service_name}, endpoint={self.endpoint or 'local'}}}"

    def _request(self, attrs: Mapping[str, Any]) -> SamplingRequest:
        """Request fields from span-start attributes, either semantic-convention generation."""
        path = attrs.get("url.path")
        if path is None and isinstance(attrs.get("http.target"), str):
            path = attrs["http.target"].split("?", 1)[0]
        return SamplingRequest(
            service=self.service_name,
            service_type=self.origin,
            host=_text(attrs.get("server.address") or attrs.get("http.host")),
            method=_text(attrs.get("http.request.method") or attrs.get("http.method")),
            path=_text(path),
            attributes=(
                {k: v for k, v in attrs.items() if isinstance(v, str)}
                if self._uses_attributes else {}
            ),
        )

    def _select(self, request: SamplingRequest, now: float) -> _RuleState:
        fresh = self._fetched_at is not None and now - self._fetched_at <= RULES_TTL
        states = self._central if fresh and self._central else self._local
        return next((s for s in states if s.match(request)), states[-1])

    def _decide(self, state: _RuleState, now: float) -> bool:
        """X-Ray's order: this second's share of an unexpired quota, or (with no valid quota) one
        borrowed trace per second; beyond that the FixedRate, or a higher BoostRate while it lasts."""
        with self._lock:
            state.requests += 1
            second = int(now)
            if second != state.this_second:
                state.this_second, state.taken, state.borrowed_this_second = second, 0, 0
            if state.quota is not None and state.quota_ttl >= now:
                if state.taken < state.quota:
                    state.taken += 1
                    state.sampled += 1
                    return True
            elif state.rule.reservoir_size > 0 and state.borrowed_this_second < 1:
                state.borrowed_this_second += 1
                state.borrowed += 1
                state.sampled += 1
                return True
            boosted = state.boost_ttl > now and state.boost_rate > state.fixed_rate
            rate = state.boost_rate if boosted else state.fixed_rate
            if self._rng.random() < rate:
                state.sampled += 1
                return True
            return False

    def sample_request(self, request: SamplingRequest) -> tuple[str, bool]:
        """(matching rule, sampled) for a request known by its fields alone (the sidecar's tail
        sampling decides on finished documents, for many services, with one sampler)."""
        now = self._clock()
        state = self._select(request, now)
        return state.rule.name, self._decide(state, now)

    def record_outcome(self, rule_name: str, anomaly: bool, sampled: bool) -> None:
        """Count one finished root span of ``rule_name`` for the boost statistics."""
        with self._lock:
            for state in (*self._central, *self._local):
                if state.rule.name == rule_name:
                    state.total += 1
                    state.anomalies += anomaly
                    state.sampled_anomalies += anomaly and sampled
                    return

    def stats_processor(self) -> SamplingStatsProcessor:
        """The span processor that feeds span ends (5xx, errors) into the boost statistics."""
        return SamplingStatsProcessor(self)

    # -- polling (background thread) ---------------------------------------------------------

    def _ensure_poller(self) -> None:
        if self.endpoint is None or not self._background or self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="tracekit-xray-sampler",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        """The poller: rules then targets on their own cadence; a failure backs off only its kind."""
        next_rules = time.monotonic()
        next_targets = next_rules + self._targets_interval
        failures = {"rules": 0, "targets": 0}
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_rules:
                ok = self._poll_guarded("rules", self.poll_rules, failures)
                next_rules = now + (self._rules_interval + random.random() * 5 if ok
                                    else _backoff(failures["rules"], self._rules_interval))
            if now >= next_targets:
                ok = self._poll_guarded("targets", self.poll_targets, failures)
                jitter = random.random() / 10  # not self._rng: that one is the decisions' (seedable)
                next_targets = now + (self._targets_interval + jitter if ok
                                      else _backoff(failures["targets"], self._targets_interval))
            self._stop.wait(max(0.0, min(next_rules, next_targets) - time.monotonic()))

    def _poll_guarded(self, what: str, poll: Callable[[], None], failures: dict[str, int]) -> bool:
        try:
            poll()
        except Exception as exc:
            failures[what] += 1
            stats.report(f"sampling.{what}_poll", exc, f"tracekit: no sampling {what} from the X-Ray daemon "
                         f"at {self.endpoint} ({stats.describe(exc)}); local rules apply, retrying")
            return False
        failures[what] = 0
        stats.incr(f"sampling.{what}_polls")
        return True

    def poll_rules(self) -> None:
        """Fetch every page of GetSamplingRules and swap in the usable rules."""
        records: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            page = self._post("/GetSamplingRules", {"NextToken": token} if token else {})
            records += page.get("SamplingRuleRecords") or []
            token = page.get("NextToken")
            if not token:
                break
        fetched = [rule for r in records if (rule := Rule.from_api(r["SamplingRule"])).usable]
        with self._lock:
            old = {s.rule.name: s for s in self._central}
            states = []
            for rule in sorted(fetched, key=lambda r: r.sort_key):
                state = _RuleState(rule, rule.fixed_rate)
                if rule.name in old:
                    state.inherit(old[rule.name])
                    state.fixed_rate = rule.fixed_rate
                states.append(state)
            self._central = states
            self._fetched_at = self._clock()
            self._uses_attributes = any(s.rule.attributes for s in (*states, *self._local))

    def poll_targets(self) -> None:
        """Report due statistics, load the new quotas, rates and boosts."""
        now = self._clock()
        documents, boosts = self._snapshot(now)
        if not documents and not boosts:
            return
        body: dict[str, Any] = {"SamplingStatisticsDocuments": documents}
        if boosts:
            body["SamplingBoostStatisticsDocuments"] = boosts
        answer = self._post("/SamplingTargets", body)
        with self._lock:
            by_name = {s.rule.name: s for s in self._central}
            for doc in answer.get("SamplingTargetDocuments") or []:
                state = by_name.get(doc.get("RuleName", ""))
                if state is not None:
                    _load_target(state, doc)
        modified = answer.get("LastRuleModification")
        if not isinstance(modified, (int, float)) or modified == self._modification_seen:
            return
        if modified > (self._fetched_at or 0):
            self.poll_rules()
            self._modification_seen = modified

    def _snapshot(self, now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Statistics due (each rule on its target Interval) as API documents; their counts restart."""
        documents: list[dict[str, Any]] = []
        boosts: list[dict[str, Any]] = []
        with self._lock:
            for state in self._central:
                due = state.requests and now - state.last_report >= state.interval
                if due and len(documents) < MAX_DOCUMENTS:
                    documents.append({"RuleName": state.rule.name, "ClientID": self.client_id,
                                  "Timestamp": now, "RequestCount": state.requests,
                                  "SampledCount": state.sampled, "BorrowCount": state.borrowed})
                    state.requests = state.sampled = state.borrowed = 0
                    state.last_report = now
                if state.rule.boost is not None and state.total and len(boosts) < MAX_DOCUMENTS:
                    boosts.append({"RuleName": state.rule.name, "ServiceName": self.service_name,
                                   "Timestamp": now, "AnomalyCount": state.anomalies,
                                   "TotalCount": state.total,
                                   "SampledAnomalyCount": state.sampled_anomalies})
                    state.total = state.anomalies = state.sampled_anomalies = 0
        return documents, boosts

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        import urllib.request

        request = urllib.request.Request(
            f"{self.endpoint}{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            answer = json.loads(response.read() or b"{}")
        if not isinstance(answer, dict):
            raise ValueError(f"{path} answered {type(answer).__name__}, not a JSON object")
        return answer

    def _after_fork(self) -> None:
        """A forked worker is a new X-Ray client: own ClientID, poller, lock and quotas (N workers
        using the parent's quota would sample N times the reservoir)."""
        self._lock = threading.Lock()
        self._thread = None
        self.client_id = os.urandom(12).hex()
        for state in self._central:
            state.forget_client_state()

    def shutdown(self) -> None:
        """Stop the poller thread."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._timeout + 1)


class SamplingStatsProcessor(SpanProcessor):
    """Feeds root span ends into the sampler's anomaly statistics (5xx or ERROR = anomaly)."""

    def __init__(self, sampler: XRaySampler) -> None:
        self._sampler = sampler

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do: the outcome is only known at the end."""

    @stats.guarded("sampling.stats_processor")
    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        rule = attrs.get(RULE_NAME_ATTRIBUTE)
        if not isinstance(rule, str) or (span.parent is not None and not span.parent.is_remote):
            return
        status = attrs.get("http.response.status_code", attrs.get("http.status_code"))
        anomaly = (isinstance(status, int) and status >= 500) or (
            span.status.status_code is StatusCode.ERROR
        )
        sampled = span.context is not None and span.context.trace_flags.sampled
        self._sampler.record_outcome(rule, anomaly, sampled)

    def shutdown(self) -> None:
        self._sampler.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _forget_in_child(sampler: XRaySampler) -> None:
    """Reset per-process state after fork (gunicorn --preload) without keeping the sampler alive."""
    ref = weakref.ref(sampler)

    def after_fork() -> None:
        alive = ref()
        if alive is not None:
            alive._after_fork()

    os.register_at_fork(after_in_child=after_fork)


def _local_rules(source: str | Path | RuleSet | Iterable[Rule] | None) -> list[Rule]:
    if source is None:
        return [DEFAULT_RULE]
    if isinstance(source, (str, Path)):
        from tracekit.sampling import rules

        return rules.load([source]).ordered()
    if isinstance(source, RuleSet):
        return source.ordered()
    return RuleSet(tuple(source)).ordered()


def _load_target(state: _RuleState, doc: Mapping[str, Any]) -> None:
    state.fixed_rate = float(doc.get("FixedRate", state.fixed_rate))
    if doc.get("ReservoirQuota") is not None:
        state.quota = int(doc["ReservoirQuota"])
    if doc.get("ReservoirQuotaTTL") is not None:
        state.quota_ttl = float(doc["ReservoirQuotaTTL"])
    if doc.get("Interval"):
        state.interval = float(doc["Interval"])
    boost = doc.get("SamplingBoost")
    if isinstance(boost, Mapping):
        state.boost_rate = float(boost["BoostRate"])
        state.boost_ttl = float(boost["BoostRateTTL"])


def _backoff(failures: int, interval: float) -> float:
    """1 s, 2 s, 4 s... never beyond the normal interval or 5 minutes."""
    return float(min(2.0 ** (failures - 1), interval, MAX_BACKOFF))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
