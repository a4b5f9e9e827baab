"""Rule files: the shipped rule set, every validation message with its line, SDK local-rules import."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tracekit.sampling import rules
from tracekit.sampling.rules import Boost, RuleFileError

RULES_DIR = Path(__file__).resolve().parents[2] / "sampling"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(*paths: Path) -> list[str]:
    return [str(p) for p in rules.check(paths)[1]]


def test_shipped_rule_set() -> None:
    ruleset = rules.load([RULES_DIR])
    by_name = {r.name: r for r in ruleset.ordered()}
    assert [r.name for r in ruleset.ordered()] == [
        "Health checks (no sampling)", "High-priority transactions", "API calls", "Default"]
    health, payment, api, default = by_name.values()
    assert (health.http_method, health.url_path, health.reservoir_size, health.fixed_rate) == (
        "GET", "/health", 0, 0.0)
    assert (payment.url_path, payment.reservoir_size, payment.fixed_rate) == ("/api/payment/*", 5, 1.0)
    assert (api.service_name, api.http_method, api.url_path) == ("order-service", "POST", "/orders/*")
    assert (api.reservoir_size, api.fixed_rate, api.boost) == (2, 0.1, Boost(0.5, 15))
    assert (default.reservoir_size, default.fixed_rate, default.priority) == (1, 0.05, 10000)
    [tail] = ruleset.tail
    assert (tail.name, tail.status_low, tail.status_high, tail.reservoir_size) == (
        "Error responses", 400, 599, 10)
    assert tail.applies(503) and not tail.applies(302)


def test_dump_round_trips(tmp_path: Path) -> None:
    ruleset = rules.load([RULES_DIR])
    for name, as_json in (("out.yaml", False), ("out.json", True)):
        again = rules.load([write(tmp_path, name, rules.dump(ruleset, json_format=as_json))])
        assert again.ordered() == ruleset.ordered()
        assert [r.description for r in again.ordered()] == [r.description for r in ruleset.ordered()]
        assert again.tail == ruleset.tail


def test_every_problem_named_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", """rules:
  - RuleName: way-too-long-a-name-for-x-ray-sampling-rules
    Priority: 0
    FixedRate: 1.5
    ReservoirSize: -1
    HTTPMethod: PROPPATCHXXX
    Colour: blue
    Attributes: {a: b, c: d, e: f, g: h, i: j, k: l}
    SamplingRateBoost: {MaxRate: 2}
    Tags: {"aws:x": y}
""")
    found = problems(path)
    f = str(path)
    assert f"{f}:2: RuleName: has 44 characters (accepted: a string of 1-32 characters)" in found
    assert f"{f}:3: Priority: 0 is out of range (accepted: an integer from 1 to 9999)" in found
    assert f"{f}:4: FixedRate: 1.5 is out of range (accepted: a number from 0 to 1)" in found
    assert f"{f}:5: ReservoirSize: -1 is out of range (accepted: an integer from 0 up)" in found
    assert any(p.startswith(f"{f}:6: HTTPMethod: has 12 characters") for p in found)
    assert any(p.startswith(f"{f}:7: Colour: unknown field (accepted: RuleName,") for p in found)
    assert any(p.startswith(f"{f}:8: Attributes: has 6 entries") for p in found)
    assert any(p.startswith(f"{f}:9: SamplingRateBoost.MaxRate: 2 is out of range") for p in found)
    assert any("SamplingRateBoost.CooldownWindowMinutes: is required" in p for p in found)
    assert any(p.startswith(f"{f}:10: Tags: bad key 'aws:x'") for p in found)
    assert len(found) == 10


def test_missing_required_and_types(tmp_path: Path) -> None:
    path = write(tmp_path, "r.json", json.dumps({"rules": [
        {"RuleName": "a", "FixedRate": "high", "ReservoirSize": True}]}, indent=1))
    found = problems(path)
    assert f"{path}:3: Priority: is required (accepted: see the X-Ray SamplingRule model)" in found
    assert any(p.startswith(f"{path}:5: FixedRate: must be a number, got 'high'") for p in found)
    assert any(p.startswith(f"{path}:6: ReservoirSize: must be an integer, got True") for p in found)


def test_duplicates_across_files_and_keys(tmp_path: Path) -> None:
    one = write(tmp_path, "a.yaml",
                "rules:\n  - {RuleName: x, Priority: 5, FixedRate: 0, ReservoirSize: 0}\n")
    two = write(tmp_path, "b.yaml", """rules:
  - {RuleName: x, Priority: 6, FixedRate: 0, ReservoirSize: 0}
  - RuleName: y
    Priority: 5
    Priority: 5
    FixedRate: 0
    ReservoirSize: 0
""")
    found = problems(tmp_path)
    assert f"{two}:5: Priority: duplicate key (accepted: each key once per mapping)" in found
    assert f"{two}:2: RuleName: duplicate of {one}:2 (accepted: unique names)" in found
    assert any(p.startswith(f"{two}:3: Priority: 5 is also the priority of 'x'") for p in found)


def test_more_rules_than_an_account_holds(tmp_path: Path) -> None:
    items = [f"  - {{RuleName: r{i}, Priority: {i + 1}, FixedRate: 0, ReservoirSize: 0}}"
             for i in range(26)]
    many = write(tmp_path, "many.yaml", "\n".join(["rules:", *items, ""]))
    assert problems(many) == [f"{many}:27: RuleName: rule 26 of 26 (accepted: at most 25 rules "
                              "besides Default per account and region)"]


def test_default_rule_only_rates_and_boost(tmp_path: Path) -> None:
    path = write(tmp_path, "d.yaml", """rules:
  - RuleName: Default
    FixedRate: 0.1
    ReservoirSize: 2
    URLPath: /api/*
""")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:5: URLPath: '/api/*' on the Default rule (accepted: only FixedRate")


def test_syntax_errors_and_bad_tail(tmp_path: Path) -> None:
    broken_yaml = write(tmp_path, "x.yaml", "rules:\n  - RuleName: a\n    Priority: [1\n")
    broken_json = write(tmp_path, "y.json", '{"rules": [\n  {"RuleName": }\n]}')
    tail = write(tmp_path, "t.yaml", "tail:\n  - Name: e\n    StatusCodes: 600-700\n")
    assert problems(broken_yaml)[0].startswith(f"{broken_yaml}:4: (syntax):")
    assert problems(broken_json)[0].startswith(f"{broken_json}:2: (syntax): Expecting value")
    assert problems(tail) == [f"{tail}:3: StatusCodes: '600-700' is not a range (accepted: "
                              "'LOW-HIGH' with 100 <= LOW <= HIGH <= 599, e.g. '500-599')"]
    with pytest.raises(RuleFileError) as info:
        rules.load([broken_yaml, tail])
    assert len(info.value.problems) == 2


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    levels = ['a: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = write(tmp_path, "bomb.yaml", "\n".join([*levels, "rules: *l8", ""]))
    started = time.perf_counter()
    [problem] = problems(bomb)
    assert problem.endswith("(document): too large once aliases are expanded (accepted: at most "
                            "100,000 YAML nodes)")
    assert time.perf_counter() - started < 2


def test_sdk_local_rules_v2_and_v1(tmp_path: Path) -> None:
    v2 = write(tmp_path, "v2.json", json.dumps({
        "version": 2,
        "rules": [
            {"description": "Player moves.", "host": "*", "http_method": "*",
             "url_path": "/api/move/*", "fixed_target": 0, "rate": 0.05},
            {"description": "Player moves.", "host": "api.example.com", "http_method": "POST",
             "url_path": "*", "fixed_target": 3, "rate": 0.5},
        ],
        "default": {"fixed_target": 1, "rate": 0.1},
    }))
    first, second, default = rules.load([v2]).ordered()
    assert (first.name, first.priority, first.url_path, first.reservoir_size, first.fixed_rate) == (
        "Player moves.", 10, "/api/move/*", 0, 0.05)
    assert (second.name, second.priority, second.host, second.http_method) == (
        "Player moves.-2", 20, "api.example.com", "POST")
    assert (default.name, default.reservoir_size, default.fixed_rate) == ("Default", 1, 0.1)
    v1 = write(tmp_path, "v1.json", json.dumps({
        "version": 1,
        "rules": [{"service_name": "shop.example.com", "http_method": "GET", "url_path": "/",
                   "fixed_target": 2, "rate": 0.2}],
        "default": {"fixed_target": 1, "rate": 0.05},
    }, indent=2))
    local, _ = rules.load([v1]).ordered()
    assert (local.name, local.host, local.service_name) == ("local-1", "shop.example.com", "*")


def test_sdk_local_rules_problems(tmp_path: Path) -> None:
    bad = write(tmp_path, "sdk.json", json.dumps({
        "version": 3,
        "rules": [{"http_method": "GET", "fixed_target": -1, "rate": 0.1, "hots": "x"}],
        "default": {"fixed_target": 1, "rate": 0.05, "url_path": "/x"},
    }, indent=2))
    found = problems(bad)
    assert any(":2: version: 3 is not supported (accepted: 1 or 2" in p for p in found)
    assert any("hots: unknown key" in p for p in found)
    assert any("URLPath: set on the default rule" in p for p in found)
    assert any("Host: is required" in p for p in found)
    assert any("ReservoirSize: -1 is out of range" in p for p in found)


def test_tail_policy_decisions() -> None:
    from tracekit.sampling.tail import TailDecider

    now = [100.0]
    [policy] = rules.load([RULES_DIR]).tail
    keep_all = TailDecider([policy], clock=lambda: now[0])
    assert [keep_all.keep(s) for s in (200, 302, 404, 503, None)] == [
        None, None, "Error responses", "Error responses", None]
    assert keep_all.keep(None, fault=True) == "Error responses"
    capped = TailDecider([rules.TailPolicy("5xx", 500, 599, 2, 0.0)], clock=lambda: now[0])
    assert [capped.keep(500) for _ in range(4)] == ["5xx", "5xx", None, None]
    now[0] += 1
    assert capped.keep(599) == "5xx"


def test_bad_rule_files_raise_the_config_error_of_every_bad_value(tmp_path: Path) -> None:
    import tracekit
    from tracekit.tracing import provider

    tail = write(tmp_path, "t.yaml", "tail:\n  - Name: e\n    StatusCodes: 600-700\n")
    with pytest.raises(tracekit.ConfigError) as info:
        tracekit.configure(sampling_rules=str(tail), exporters="none")
    provider.shutdown()
    assert isinstance(info.value, RuleFileError)
    assert str(info.value) == (f"{tail}:3: StatusCodes: '600-700' is not a range (accepted: "
                               "'LOW-HIGH' with 100 <= LOW <= HIGH <= 599, e.g. '500-599')")
    assert info.value.name == f"{tail}:3: StatusCodes" and info.value.accepted.startswith("'LOW-HIGH'")
