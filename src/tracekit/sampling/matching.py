"""Request matching exactly as X-Ray rules define it: case-insensitive globs over whole strings.

A two-pointer matcher (at worst pattern length x text length steps) is used instead of regular
expressions because patterns come from the account and texts from requests: a regex with many
``*`` can backtrack exponentially on the request path. Each rule is compiled once per refresh.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracekit.sampling.rules import Rule


def glob_match(pattern: str, text: str) -> bool:
    """True when ``pattern`` (``*`` = any run, ``?`` = one character) covers all of ``text``."""
    return _compile(pattern)(text)


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> Callable[[str], bool]:
    """A matcher for ``pattern``; the common shapes (``*``, literal, ``prefix*``) skip the scan."""
    pat = pattern.lower()
    if pat.strip("*") == "":
        return lambda text: bool(pat) or not text
    wild = "*" in pat or "?" in pat
    if not wild:
        return lambda text: text.lower() == pat
    head = pat[:-1]
    if pat.endswith("*") and "*" not in head and "?" not in head:
        return lambda text: text.lower().startswith(head)
    return lambda text: _scan(pat, text.lower())


def _scan(pat: str, txt: str) -> bool:
    """Greedy two-pointer glob with backtracking to the last ``*``: O(len(pat) * len(txt))."""
    p = t = 0
    star_p, star_t = -1, 0
    while t < len(txt):
        if p < len(pat) and pat[p] == "*":
            star_p, star_t = p, t
            p += 1
        elif p < len(pat) and (pat[p] == "?" or pat[p] == txt[t]):
            p += 1
            t += 1
        elif star_p >= 0:
            star_t += 1
            p, t = star_p + 1, star_t
        else:
            return False
    return all(c == "*" for c in pat[p:])


@dataclass(frozen=True)
class SamplingRequest:
    """What a head-sampling decision can see about a request; ``None`` means unknown."""

    service: str | None = None
    service_type: str | None = None
    host: str | None = None
    method: str | None = None
    path: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


MATCH_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("ServiceName", "service_name", "service"),
    ("ServiceType", "service_type", "service_type"),
    ("Host", "host", "host"),
    ("HTTPMethod", "http_method", "method"),
    ("URLPath", "url_path", "path"),
)
"""(API field, Rule attribute, SamplingRequest attribute) for every matched field."""


@dataclass(frozen=True)
class _Check:
    """One non-trivial field of a rule: its label, pattern and how to read the request."""

    label: str
    pattern: str
    read: Callable[[SamplingRequest], str | None]
    match: Callable[[str], bool]
    required: bool
    """Attributes must be present; an unknown request field is matched as the empty string."""
    why: str = ""
    """Set on checks that always fail, as the reason."""

    def fails(self, request: SamplingRequest) -> bool:
        value = self.read(request)
        if value is None:
            return self.required or not self.match("")
        return not self.match(value)


def _checks(rule: Rule) -> list[_Check]:
    if not rule.usable:
        why = (f"ResourceARN {rule.resource_arn!r}: clients (tracekit's and the X-Ray SDKs') "
               "apply only rules with ResourceARN '*' and Version 1")
        return [_Check("ResourceARN", rule.resource_arn, _no_field, _never, True, why)]
    checks = [
        _Check(api, pattern, operator.attrgetter(req_attr), _compile(pattern), False)
        for api, rule_attr, req_attr in MATCH_FIELDS
        if (pattern := getattr(rule, rule_attr)) != "*"
    ]
    checks += [
        _Check(f"Attributes.{key}", pattern, _attribute_reader(key), _compile(pattern), True)
        for key, pattern in rule.attributes.items()
    ]
    return checks


def _no_field(request: SamplingRequest) -> None:
    return None


def _never(text: str) -> bool:
    return False


def _attribute_reader(key: str) -> Callable[[SamplingRequest], str | None]:
    return lambda request: request.attributes.get(key)


def compile_rule(rule: Rule) -> Callable[[SamplingRequest], bool]:
    """A fast matcher for one rule (the sampler keeps one per rule)."""
    checks = _checks(rule)

    def match(request: SamplingRequest) -> bool:
        for check in checks:  # noqa: SIM110 - a plain loop beats all(genexpr) on the hot path
            if check.fails(request):
                return False
        return True

    return match


def matches(rule: Rule, request: SamplingRequest) -> bool:
    """True when every field of ``rule`` matches ``request`` (see :func:`mismatches`)."""
    return compile_rule(rule)(request)


def mismatches(rule: Rule, request: SamplingRequest) -> list[str]:
    """Why ``rule`` does not match ``request`` (empty when it matches).

    An unknown request field matches only a pattern that matches the empty string (``*``):
    unlike aws-xray-sdk-python (issue #323) a rule for ``/api/*`` never catches a request whose
    path is unknown. A rule attribute the request lacks never matches.
    """
    return [
        c.why or f"{c.label} {c.pattern!r} does not match "
        + ("unknown" if (value := c.read(request)) is None else repr(value))
        for c in _checks(rule)
        if c.fails(request)
    ]
