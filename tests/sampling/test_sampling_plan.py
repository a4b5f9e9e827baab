"""validate -> plan -> apply -> drift -> export through the CLI and the library, against the
local control plane via boto3: idempotence, managed-only deletes, Default, throttling, hard errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tracekit.cli import main
from tracekit.sampling import plan, rules
from tracekit.sampling.controlplane import ControlPlane

RULES_DIR = Path(__file__).resolve().parents[2] / "sampling"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["sampling", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in argv else out


def test_workflow_through_cli(plane: ControlPlane, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    ep = ("--endpoint-url", plane.url, "--region", "us-east-1")
    assert cli(capsys, "validate", str(RULES_DIR))[0] == 0
    code, planned = cli(capsys, "plan", str(RULES_DIR), *ep, "--json")
    assert code == 0
    assert [(c["action"], c["rule"]) for c in planned["changes"]] == [
        ("update", "Default"), ("create", "Health checks (no sampling)"),
        ("create", "High-priority transactions"), ("create", "API calls")]
    assert planned["changes"][0]["fields"] == ["SamplingRateBoost"]
    assert cli(capsys, "drift", str(RULES_DIR), *ep)[0] == 2
    code, applied = cli(capsys, "apply", str(RULES_DIR), *ep, "--json")
    assert code == 0 and applied["ok"] and len(applied["applied"]) == 4
    code, again = cli(capsys, "apply", str(RULES_DIR), *ep)
    assert (code, again.strip()) == (0, "no changes")
    assert cli(capsys, "drift", str(RULES_DIR), *ep) == (0, "no drift\n")
    exported = tmp_path / "live.yaml"
    assert cli(capsys, "export", *ep, "-o", str(exported))[0] == 0
    assert cli(capsys, "validate", str(exported))[0] == 0
    assert cli(capsys, "plan", str(exported), *ep)[1].strip() == "no changes"
    live_json = tmp_path / "live.json"
    assert cli(capsys, "export", *ep, "-o", str(live_json))[0] == 0
    assert cli(capsys, "drift", str(live_json), *ep)[0] == 0


def test_changes_deletes_and_unmanaged(plane: ControlPlane, xray: Any, tmp_path: Path) -> None:
    plane.load_rules([rules.Rule("hand-made", 50, 0.3, 0)])  # clicked together in the console
    desired = rules.load([RULES_DIR])
    assert plan.apply(xray, plan.make_plan(desired, plan.live_rules(xray))).ok
    tags = {r.name: r.tags for r in plan.live_rules(xray)}
    assert tags["API calls"] == {"managed-by": "tracekit"} and tags["hand-made"] == {}
    edited = tmp_path / "edited.yaml"
    text = rules.dump(desired).replace("FixedRate: 0.1\n", "FixedRate: 0.2\n")
    edited.write_text(text.replace("- RuleName: Health checks (no sampling)",
                                   "- RuleName: Health probes"))
    changes = plan.make_plan(rules.load([edited]), plan.live_rules(xray))
    assert [(c.action, c.name, c.fields) for c in changes.changes] == [
        ("delete", "Health checks (no sampling)", ()),
        ("update", "API calls", ("FixedRate",)),
        ("create", "Health probes", ())]
    assert changes.kept_unmanaged == ("hand-made",)
    assert "FixedRate 0.1 -> 0.2" in changes.changes[1].describe()
    assert plan.apply(xray, changes).ok
    pruned = plan.make_plan(rules.load([edited]), plan.live_rules(xray), prune_unmanaged=True)
    assert [(c.action, c.name) for c in pruned.changes] == [("delete", "hand-made")]


def test_tags_boost_removal_and_default(plane: ControlPlane, xray: Any) -> None:
    base = rules.load([RULES_DIR])
    plan.apply(xray, plan.make_plan(base, plan.live_rules(xray)))
    api, default = base.ordered()[2], base.ordered()[3]
    from dataclasses import replace

    changed = rules.RuleSet((replace(api, boost=None, tags={"team": "orders"}),
                             replace(default, fixed_rate=0.1)))
    steps = plan.make_plan(changed, plan.live_rules(xray))
    by_name = {c.name: c for c in steps.changes}
    assert by_name["API calls"].action == "replace"  # UpdateSamplingRule cannot drop a boost
    assert by_name["Default"].fields == ("FixedRate",)
    assert plan.apply(xray, steps).ok
    live = {r.name: r for r in plan.live_rules(xray)}
    assert live["API calls"].boost is None
    assert live["API calls"].tags == {"team": "orders", "managed-by": "tracekit"}
    assert live["Default"].fixed_rate == 0.1
    retag = rules.RuleSet((replace(api, boost=None, tags={"owner": "x"}), replace(default, fixed_rate=0.1)))
    steps = plan.make_plan(retag, plan.live_rules(xray))
    assert [(c.action, c.fields) for c in steps.changes] == [("update", ("Tags",))]
    assert plan.apply(xray, steps).ok
    assert {r.name: r.tags for r in plan.live_rules(xray)}["API calls"] == {
        "owner": "x", "managed-by": "tracekit"}


def test_default_boost_cannot_be_removed(plane: ControlPlane, xray: Any, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """UpdateSamplingRule cannot clear a boost and Default cannot be recreated: apply refuses the
    whole plan up front instead of failing half-way."""
    plan.apply(xray, plan.make_plan(rules.load([RULES_DIR]), plan.live_rules(xray)))
    only_default = rules.RuleSet((rules.DEFAULT_RULE,))
    steps = plan.make_plan(only_default, plan.live_rules(xray))
    assert steps.blocked is not None and steps.blocked.name == "Default"
    report = plan.apply(xray, steps)
    assert not report.ok and report.applied == [] and len(report.not_applied) == 3
    assert "cannot be removed from Default" in report.error
    assert len(plan.live_rules(xray)) == 4
    bare = tmp_path / "default.yaml"
    bare.write_text("rules:\n  - {RuleName: Default, FixedRate: 0.05, ReservoirSize: 1}\n")
    code, out = cli(capsys, "plan", "--endpoint-url", plane.url, str(bare))
    assert code == 1 and "    cannot be applied: SamplingRateBoost cannot be removed" in out


def test_throttling_is_retried(plane: ControlPlane, xray: Any) -> None:
    plane.throttle_next("/CreateSamplingRule", times=2)
    sleeps: list[float] = []
    report = plan.apply(xray, plan.make_plan(rules.load([RULES_DIR]), plan.live_rules(xray)),
                        sleep=sleeps.append)
    assert report.ok and len(report.applied) == 4
    assert len(sleeps) == 2 and all(0 < s <= 5 for s in sleeps)


def test_stops_at_first_hard_error(xray: Any) -> None:
    plane_limit = ControlPlane(max_rules=1).start()
    try:
        import boto3

        client = boto3.client("xray", endpoint_url=plane_limit.url, region_name="us-east-1")
        report = plan.apply(client, plan.make_plan(rules.load([RULES_DIR]), plan.live_rules(client)))
        assert not report.ok
        assert [c.name for c in report.applied] == ["Default", "Health checks (no sampling)"]
        assert report.failed is not None and report.failed.name == "High-priority transactions"
        assert report.error.startswith("RuleLimitExceededException")
        assert [c.name for c in report.not_applied] == ["API calls"]
    finally:
        plane_limit.stop()


def test_cli_errors(plane: ControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - RuleName: x\n    FixedRate: 2\n    ReservoirSize: 1\n    Priority: 3\n")
    code, out = cli(capsys, "validate", str(bad))
    assert code == 1
    assert out.strip() == f"{bad}:3: FixedRate: 2 is out of range (accepted: a number from 0 to 1)"
    code, data = cli(capsys, "validate", str(bad), "--json")
    assert code == 1 and data["problems"][0]["line"] == 3
    assert cli(capsys, "plan", str(bad), "--endpoint-url", plane.url)[0] == 1
    empty = tmp_path / "empty"
    empty.mkdir()  # a wrong directory must not plan to delete every managed rule
    assert cli(capsys, "apply", str(empty), "--endpoint-url", plane.url) == (
        1, f"{empty}:1: (directory): holds no rule files (accepted: a directory with .yaml, "
           ".yml or .json rule files)\n")
    code, out = cli(capsys, "plan", str(RULES_DIR), "--endpoint-url", "http://127.0.0.1:9")
    assert code == 1 and out.startswith("error: Could not connect")


def test_local_endpoint_needs_no_aws_configuration(
        plane: ControlPlane, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, out = cli(capsys, "plan", str(RULES_DIR), "--endpoint-url", plane.url)
    assert code == 0 and "+ create 'API calls'" in out
