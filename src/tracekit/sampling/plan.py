"""Plan, apply, export and drift: keep an account's sampling rules in step with the rule files.

Works with any boto3 ``xray`` client (real X-Ray, or the local control plane via ``endpoint_url``).
Only rules tagged ``managed-by: tracekit`` are deleted, unless ``prune_unmanaged``; ``Default`` is
never deleted and only its rates and boost are compared. The managed-by tag itself is never part of
a diff, so an exported file plans to no changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from tracekit._shared import planning
from tracekit._shared.planning import ApplyReport
from tracekit.sampling.rules import MANAGED_TAG, Rule, RuleSet
from tracekit.sampling.validate import DEFAULT_MUTABLE

Action = Literal["create", "update", "replace", "delete"]
_NOT_COMPARED = ("RuleName", "RuleARN", "Version")


@dataclass(frozen=True)
class Change:
    """One step of a plan; ``fields`` are the API fields (and ``Tags``) that differ."""

    action: Action
    name: str
    desired: Rule | None = None
    live: Rule | None = None
    fields: tuple[str, ...] = ()
    blocked: str = ""
    """Why the API cannot perform this change (``apply`` then changes nothing)."""

    def describe(self) -> str:
        """A one-line human summary, e.g. ``~ update 'Default': FixedRate 0.05 -> 0.1``."""
        sign = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}[self.action]
        text = f"{sign} {self.action} {self.name!r}"
        if self.fields and self.live and self.desired:
            before, after = _comparable(self.live), _comparable(self.desired)
            text += ": " + ", ".join(f"{f} {before.get(f)!r} -> {after.get(f)!r}" for f in self.fields)
        return text

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "rule": self.name, "fields": list(self.fields),
                "summary": self.describe(), "blocked": self.blocked}


@dataclass(frozen=True)
class Plan:
    """The changes that make the account match the files, in the order ``apply`` runs them."""

    changes: tuple[Change, ...] = ()
    kept_unmanaged: tuple[str, ...] = ()
    """Live rules absent from the files that are kept because tracekit did not create them."""

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def blocked(self) -> Change | None:
        """The first change the API cannot make, if any."""
        return next((c for c in self.changes if c.blocked), None)

    def to_json(self) -> dict[str, Any]:
        return {"changes": [c.to_json() for c in self.changes],
                "kept_unmanaged": list(self.kept_unmanaged)}

    def text(self) -> str:
        """One line per change, then the unmanaged rules that are kept."""
        lines = [c.describe() + (f"\n    cannot be applied: {c.blocked}" if c.blocked else "")
                 for c in self.changes] or ["no changes"]
        lines += [f"  keep {n!r}: not managed by tracekit (--prune-unmanaged deletes it)"
                  for n in self.kept_unmanaged]
        return "\n".join(lines)


def live_rules(client: Any) -> list[Rule]:
    """Every rule in the account (all pages) with its tags."""
    rules: list[Rule] = []
    for page in client.get_paginator("get_sampling_rules").paginate():
        for record in page.get("SamplingRuleRecords", []):
            api = record["SamplingRule"]
            rules.append(Rule.from_api(api, _tags(client, api["RuleARN"]), location="live"))
    return sorted(rules, key=lambda r: r.sort_key)


def _tags(client: Any, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    token: str | None = None
    while True:
        kwargs = {"ResourceARN": arn, **({"NextToken": token} if token else {})}
        page = client.list_tags_for_resource(**kwargs)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        token = page.get("NextToken")
        if not token:
            return tags


def _comparable(rule: Rule) -> dict[str, Any]:
    api = {k: v for k, v in rule.to_api().items() if k not in _NOT_COMPARED}
    if rule.is_default:
        api = {k: v for k, v in api.items() if k in DEFAULT_MUTABLE}
    api.setdefault("SamplingRateBoost", None)
    api["Tags"] = {k: v for k, v in rule.tags.items() if k != MANAGED_TAG[0]}
    return api


def _diff(desired: Rule, live: Rule) -> tuple[str, ...]:
    want, have = _comparable(desired), _comparable(live)
    return tuple(k for k in want if want[k] != have.get(k))


def make_plan(desired: RuleSet, live: Sequence[Rule], prune_unmanaged: bool = False) -> Plan:
    """Diff the files against the live rules: deletes first (they free rule slots), then updates
    and replacements, then creates."""
    wanted = {r.name: r for r in desired.ordered()}
    have = {r.name: r for r in live}
    deletes, kept = [], []
    for rule in live:
        if rule.name in wanted or rule.is_default:
            continue
        if prune_unmanaged or rule.tags.get(MANAGED_TAG[0]) == MANAGED_TAG[1]:
            deletes.append(Change("delete", rule.name, live=rule))
        else:
            kept.append(rule.name)
    updates, creates = [], []
    for rule in wanted.values():
        current = have.get(rule.name)
        if current is None:
            creates.append(Change("create", rule.name, desired=rule))
            continue
        fields = _diff(rule, current)
        if fields:
            updates.append(_update(rule, current, fields))
    return Plan(tuple(deletes + updates + creates), tuple(kept))


_DEFAULT_BOOST = ("SamplingRateBoost cannot be removed from Default: UpdateSamplingRule has no "
                  "way to clear it and Default cannot be recreated (accepted: keep a "
                  "SamplingRateBoost on Default)")


def _update(desired: Rule, live: Rule, fields: tuple[str, ...]) -> Change:
    """UpdateSamplingRule cannot remove a boost: a user rule is deleted and created again."""
    if desired.boost is not None or live.boost is None:
        return Change("update", desired.name, desired, live, fields)
    if desired.is_default:
        return Change("update", desired.name, desired, live, fields, blocked=_DEFAULT_BOOST)
    return Change("replace", desired.name, desired, live, fields)


def apply(
    client: Any,
    plan: Plan,
    *,
    attempts: int = 6,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyReport:
    """Run the plan; retry throttling with backoff; stop at the first other error.

    A plan with a change the API cannot make is refused before any call, so that the account
    is not left half-changed.
    """
    return planning.apply_changes(client, plan.changes, _calls, attempts=attempts, sleep=sleep)


def _calls(change: Change) -> list[planning.Call]:
    """The API calls of one change; tags only through Create or Tag/UntagResource (no Update)."""
    if change.action == "delete":
        return [lambda c: c.delete_sampling_rule(RuleName=change.name)]
    desired = change.desired
    assert desired is not None
    create: planning.Call = lambda c: c.create_sampling_rule(  # noqa: E731
        SamplingRule=desired.to_api(),
        Tags=[{"Key": k, "Value": v} for k, v in {**desired.tags, **dict([MANAGED_TAG])}.items()],
    )
    if change.action == "create":
        return [create]
    if change.action == "replace":
        return [lambda c: c.delete_sampling_rule(RuleName=change.name), create]
    calls: list[planning.Call] = []
    api_fields = [f for f in change.fields if f != "Tags"]
    if api_fields:
        update = {"RuleName": change.name, **{f: desired.to_api()[f] for f in api_fields}}
        calls.append(lambda c: c.update_sampling_rule(SamplingRuleUpdate=update))
    if "Tags" in change.fields and change.live is not None:
        calls += _tag_calls(change.live, desired)
    return calls


def _tag_calls(live: Rule, desired: Rule) -> list[planning.Call]:
    """Tag changes go through TagResource/UntagResource on the rule's ARN."""
    calls: list[planning.Call] = []
    removed = [k for k in live.tags if k not in desired.tags and k != MANAGED_TAG[0]]
    if removed:
        calls.append(lambda c: c.untag_resource(ResourceARN=live.arn, TagKeys=removed))
    if desired.tags:
        tags = [{"Key": k, "Value": v} for k, v in desired.tags.items()]
        calls.append(lambda c: c.tag_resource(ResourceARN=live.arn, Tags=tags))
    return calls


def export(client: Any) -> RuleSet:
    """The live rules as a rule set whose dump plans to no changes against the account."""
    rules = [
        replace(r, tags={k: v for k, v in r.tags.items() if k != MANAGED_TAG[0]}, location="")
        for r in live_rules(client)
    ]
    return RuleSet(tuple(rules))
