"""Request matching exactly as X-Ray rules define it: case-insensitive globs over whole strings.

A linear two-pointer matcher is used instead of regular expressions because patterns come from
the account and texts from requests: a regex with many ``*`` can backtrack exponentially on the
request path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracekit.sampling.rules import Rule


def glob_match(pattern: str, text: str) -> bool:
    """True when ``pattern`` (``*`` = any run, ``?`` = one character) covers all of ``text``."""
    if pattern == "*":
        return True
    pat, txt = pattern.lower(), text.lower()
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


def _failures(rule: Rule, request: SamplingRequest) -> Iterator[tuple[str, str, str | None]]:
    """Lazily yield (field, pattern, request value) for every field that does not match."""
    for api_name, rule_attr, req_attr in MATCH_FIELDS:
        pattern: str = getattr(rule, rule_attr)
        value: str | None = getattr(request, req_attr)
        if not glob_match(pattern, value or ""):
            yield api_name, pattern, value
    for key, pattern in rule.attributes.items():
        value = request.attributes.get(key)
        if value is None or not glob_match(pattern, value):
            yield f"Attributes.{key}", pattern, value


def matches(rule: Rule, request: SamplingRequest) -> bool:
    """True when every field of ``rule`` matches ``request`` (see :func:`mismatches`)."""
    return next(_failures(rule, request), None) is None


def mismatches(rule: Rule, request: SamplingRequest) -> list[str]:
    """Why ``rule`` does not match ``request`` (empty when it matches).

    An unknown request field matches only a pattern that matches the empty string (``*``):
    unlike aws-xray-sdk-python (issue #323) a rule for ``/api/*`` never catches a request whose
    path is unknown. A rule attribute the request lacks never matches.
    """
    return [
        f"{name} {pattern!r} does not match {'unknown' if value is None else repr(value)}"
        for name, pattern, value in _failures(rule, request)
    ]
