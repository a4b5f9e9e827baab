"""The glob matcher: property tests against a reference definition, and the rule matcher."""

from __future__ import annotations

import functools

from hypothesis import given
from hypothesis import strategies as st

from tracekit.sampling.matching import SamplingRequest, glob_match, matches, mismatches
from tracekit.sampling.rules import Rule

ALPHABET = "aAbB/-.é"
texts = st.text(alphabet=ALPHABET, max_size=12)
patterns = st.text(alphabet=ALPHABET + "*?", max_size=10)


def reference(pattern: str, text: str) -> bool:
    """The definition, by recursion: * = any run, ? = one character, others equal ignoring case."""
    pattern, text = pattern.lower(), text.lower()

    @functools.cache
    def go(p: int, t: int) -> bool:
        if p == len(pattern):
            return t == len(text)
        if pattern[p] == "*":
            return go(p + 1, t) or (t < len(text) and go(p, t + 1))
        return t < len(text) and pattern[p] in ("?", text[t]) and go(p + 1, t + 1)

    return go(0, 0)


@given(patterns, texts)
def test_agrees_with_reference(pattern: str, text: str) -> None:
    assert glob_match(pattern, text) == reference(pattern, text)


@given(texts)
def test_literal_matches_itself_in_any_case(text: str) -> None:
    assert glob_match(text, text)
    assert glob_match(text.upper(), text.lower())


@given(texts, texts)
def test_star_matches_any_suffix(prefix: str, rest: str) -> None:
    assert glob_match(prefix + "*", prefix + rest)
    assert glob_match("*" + rest, prefix + rest)
    assert glob_match("*", rest)


@given(texts)
def test_question_marks_match_exactly_that_length(text: str) -> None:
    assert glob_match("?" * len(text), text)
    assert not glob_match("?" * (len(text) + 1), text)


def test_whole_string_not_substring() -> None:
    assert glob_match("/api/*", "/API/payment/1")
    assert not glob_match("/api", "/api/payment")
    assert not glob_match("api/*", "/api/x")
    assert glob_match("", "")
    assert not glob_match("", "x")


def test_many_stars_stay_fast() -> None:
    assert not glob_match("*a" * 60 + "b", "a" * 5000)


def test_unknown_fields_match_only_star() -> None:
    rule = Rule("r", 1, 0.1, 1, url_path="/api/*")
    assert not matches(rule, SamplingRequest(service="s", method="GET"))
    assert mismatches(rule, SamplingRequest()) == ["URLPath '/api/*' does not match unknown"]
    assert matches(Rule("any", 2, 0.1, 1), SamplingRequest())


def test_attributes_must_be_present_and_match() -> None:
    rule = Rule("r", 1, 0.1, 1, attributes={"tenant": "gold-*"})
    assert matches(rule, SamplingRequest(attributes={"tenant": "GOLD-1"}))
    assert not matches(rule, SamplingRequest(attributes={"tenant": "silver"}))
    assert mismatches(rule, SamplingRequest()) == ["Attributes.tenant 'gold-*' does not match unknown"]


def test_rules_clients_never_apply_never_match() -> None:
    """Explain, cost and the local fallback agree with the centralized sampler, which skips them."""
    ecs_only = Rule("ecs", 1, 1.0, 1, resource_arn="arn:aws:ecs:us-east-1:1:task/x")
    assert not matches(ecs_only, SamplingRequest())
    assert mismatches(ecs_only, SamplingRequest())[0].startswith(
        "ResourceARN 'arn:aws:ecs:us-east-1:1:task/x': clients (tracekit's and the X-Ray SDKs') "
        "apply only rules with ResourceARN '*' and Version 1")
    assert not matches(Rule("v2", 1, 1.0, 1, version=2), SamplingRequest())
