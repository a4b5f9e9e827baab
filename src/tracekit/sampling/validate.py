"""Every constraint of the X-Ray sampling API model, shared by the file loader and the control plane.

Checks work on API-shaped dictionaries (``RuleName``, ``FixedRate``...) and return issues as
``(field, problem, accepted)`` so each caller can add its own location (file line, HTTP error).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

Issue = tuple[str, str, str]
"""(field, problem, accepted values)."""

DEFAULT_RULE_NAME = "Default"
DEFAULT_PRIORITY = 10000
"""What X-Ray reports as the Default rule's priority: after every user rule (1-9999)."""
MAX_ATTRIBUTES = 5
MAX_RULES = 25
"""User rules per account and region (Default excluded): X-Ray's quota, beyond which
CreateSamplingRule fails with RuleLimitExceededException."""
MAX_TAGS_PER_RESOURCE = 50

STRING_LIMITS: dict[str, tuple[int, int]] = {
    "RuleName": (1, 32),
    "ResourceARN": (0, 500),
    "ServiceName": (0, 64),
    "ServiceType": (0, 64),
    "Host": (0, 64),
    "HTTPMethod": (0, 10),
    "URLPath": (0, 128),
}
MATCHER_FIELDS = ("ServiceName", "ServiceType", "Host", "HTTPMethod", "URLPath")
REQUIRED_ON_CREATE = (
    "RuleName",
    "ResourceARN",
    "Priority",
    "FixedRate",
    "ReservoirSize",
    *MATCHER_FIELDS,
    "Version",
)
RULE_FIELDS = (*REQUIRED_ON_CREATE, "RuleARN", "Attributes", "SamplingRateBoost")
DEFAULT_MUTABLE = ("FixedRate", "ReservoirSize", "SamplingRateBoost")


def is_int(value: object) -> bool:
    """True for a real integer (``True`` is not a priority)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for a finite int or float (not bool)."""
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


def _check_string(name: str, value: object) -> list[Issue]:
    low, high = STRING_LIMITS[name]
    accepted = f"a string of {low}-{high} characters"
    if not isinstance(value, str):
        return [(name, f"must be a string, got {type(value).__name__}", accepted)]
    if not low <= len(value) <= high:
        return [(name, f"has {len(value)} characters", accepted)]
    return []


def _check_range(
    name: str, value: object, low: float, high: float | None, integer: bool
) -> list[Issue]:
    kind = "an integer" if integer else "a number"
    accepted = f"{kind} from {low:g}" + (f" to {high:g}" if high is not None else " up")
    if not (is_int(value) if integer else is_number(value)):
        return [(name, f"must be {kind}, got {value!r}", accepted)]
    number = float(value)  # type: ignore[arg-type]
    if number < low or (high is not None and number > high):
        return [(name, f"{value!r} is out of range", accepted)]
    return []


def _check_attributes(value: object) -> list[Issue]:
    accepted = f"a mapping of at most {MAX_ATTRIBUTES} string keys and values of 1-32 characters"
    if not isinstance(value, Mapping):
        return [("Attributes", "must be a mapping", accepted)]
    if len(value) > MAX_ATTRIBUTES:
        return [("Attributes", f"has {len(value)} entries", accepted)]
    bad = [
        k
        for k, v in value.items()
        if not (isinstance(k, str) and isinstance(v, str) and 1 <= len(k) <= 32 and 1 <= len(v) <= 32)
    ]
    return [(f"Attributes.{k}", "key or value is not a string of 1-32 characters", accepted) for k in bad]


def _check_boost(value: object) -> list[Issue]:
    accepted = "{MaxRate: 0-1, CooldownWindowMinutes: integer >= 0}"
    if not isinstance(value, Mapping):
        return [("SamplingRateBoost", "must be a mapping", accepted)]
    issues: list[Issue] = []
    for key in value:
        if key not in ("MaxRate", "CooldownWindowMinutes"):
            issues.append((f"SamplingRateBoost.{key}", "unknown key", accepted))
    for key, low, high, integer in (("MaxRate", 0, 1, False), ("CooldownWindowMinutes", 0, None, True)):
        if key not in value:
            issues.append((f"SamplingRateBoost.{key}", "is required", accepted))
        else:
            issues += _check_range(f"SamplingRateBoost.{key}", value[key], low, high, integer)
    return issues


def check_rule(rule: Mapping[str, object], partial: bool = False) -> list[Issue]:
    """Check a ``SamplingRule`` (``partial`` = a ``SamplingRuleUpdate``: nothing is required)."""
    issues: list[Issue] = []
    if not partial:
        issues += [(f, "is required", "see the X-Ray SamplingRule model") for f in REQUIRED_ON_CREATE
                   if f not in rule]
    for name, value in rule.items():
        if name in STRING_LIMITS:
            issues += _check_string(name, value)
        elif name == "RuleARN":
            if not isinstance(value, str):
                issues.append((name, "must be a string", "an ARN"))
        elif name == "Priority":
            high = DEFAULT_PRIORITY if rule.get("RuleName") == DEFAULT_RULE_NAME else 9999
            issues += _check_range(name, value, 1, high, True)
        elif name == "FixedRate":
            issues += _check_range(name, value, 0, 1, False)
        elif name == "ReservoirSize":
            issues += _check_range(name, value, 0, None, True)
        elif name == "Version":
            if value != 1 or not is_int(value):
                issues.append((name, f"{value!r} is not supported", "1"))
        elif name == "Attributes":
            issues += _check_attributes(value)
        elif name == "SamplingRateBoost":
            issues += _check_boost(value)
        else:
            issues.append((name, "unknown field", ", ".join(RULE_FIELDS)))
    return issues


def check_default(rule: Mapping[str, object]) -> list[Issue]:
    """The ``Default`` rule matches everything: only its rates and boost may differ."""
    accepted = "only " + ", ".join(DEFAULT_MUTABLE) + " can change on Default"
    issues: list[Issue] = []
    for name in (*MATCHER_FIELDS, "ResourceARN"):
        if rule.get(name, "*") != "*":
            issues.append((name, f"{rule[name]!r} on the Default rule", accepted))
    if rule.get("Attributes"):
        issues.append(("Attributes", "set on the Default rule", accepted))
    if rule.get("Priority", DEFAULT_PRIORITY) != DEFAULT_PRIORITY:
        issues.append(("Priority", "set on the Default rule", accepted))
    return issues


def check_tags(tags: object, limit: int = MAX_TAGS_PER_RESOURCE) -> list[Issue]:
    """Tags as the API takes them: a list of ``{Key, Value}``.

    ``limit`` is 50 (what one resource may carry) except where the API takes a longer list and
    reports the per-resource limit separately (TagResource: TooManyTagsException).
    """
    accepted = (
        f"at most {limit} tags; key 1-128 characters not starting with 'aws:', value 0-256 "
        "characters; letters, digits, spaces and _ . : / = + - @"
    )
    if not isinstance(tags, list):
        return [("Tags", "must be a list of {Key, Value}", accepted)]
    if len(tags) > limit:
        return [("Tags", f"has {len(tags)} tags", accepted)]
    issues: list[Issue] = []
    for tag in tags:
        key = tag.get("Key") if isinstance(tag, Mapping) else None
        value = tag.get("Value") if isinstance(tag, Mapping) else None
        if not _tag_text(key, 1, 128) or str(key).lower().startswith("aws:"):
            issues.append(("Tags", f"bad key {key!r}", accepted))
        elif not _tag_text(value, 0, 256):
            issues.append((f"Tags.{key}", f"bad value {value!r}", accepted))
    return issues


_TAG_TEXT = re.compile(r"[\w\s_.:/=+\-@]*")


def _tag_text(value: object, low: int, high: int) -> bool:
    """AWS tag syntax: Unicode letters, digits, whitespace and ``_ . : / = + - @``."""
    return isinstance(value, str) and low <= len(value) <= high and bool(_TAG_TEXT.fullmatch(value))


class Located(Protocol):
    """What :func:`check_unique` reads of a rule (``tracekit.sampling.rules.Rule``)."""

    @property
    def name(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def location(self) -> str: ...


R = TypeVar("R", bound=Located)


def check_unique(rules: Sequence[R]) -> list[tuple[R, Issue]]:
    """Duplicate rule names, duplicate priorities (which make the order depend on names), and
    rules beyond the account's quota (apply would fail half-way with RuleLimitExceeded)."""
    user_rules = [r for r in rules if r.name != DEFAULT_RULE_NAME]
    issues: list[tuple[R, Issue]] = [
        (rule, ("RuleName", f"rule {MAX_RULES + 1 + i} of {len(user_rules)}",
                f"at most {MAX_RULES} rules besides Default per account and region"))
        for i, rule in enumerate(user_rules[MAX_RULES:])
    ]
    names: dict[str, R] = {}
    priorities: dict[int, R] = {}
    for rule in rules:
        first = names.setdefault(rule.name, rule)
        if first is not rule:
            issues.append((rule, ("RuleName", f"duplicate of {first.location}", "unique names")))
        if rule.name == DEFAULT_RULE_NAME:
            continue
        other = priorities.setdefault(rule.priority, rule)
        if other is not rule:
            problem = f"{rule.priority} is also the priority of {other.name!r} ({other.location})"
            issues.append((rule, ("Priority", problem, "unique priorities")))
    return issues
