"""``tracekit dashboards plan|apply|drift|export`` against a real moto server (CloudWatch API)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from dashboards_helpers import PARAMS, SPEC_DIR, TOPIC, Run, run_json

from tracekit.cli import main
from tracekit.dashboards import DEFAULT_PREFIX, build, spec

DASHBOARD = "tracekit-order-service"
ERROR_RATE = "tracekit-order-service 5xx rate GET /orders/{order_id}"


def _desired() -> build.Desired:
    specs, problems = spec.check([SPEC_DIR], {"alarm_topic": TOPIC})
    desired, more = build.desired(specs, DEFAULT_PREFIX, "us-east-1")
    assert not problems + more
    return desired


def _alarms(cloudwatch: Any) -> dict[str, dict[str, Any]]:
    pages = cloudwatch.get_paginator("describe_alarms").paginate()
    return {a["AlarmName"]: a for page in pages for a in page["MetricAlarms"]}


def test_apply_puts_everything_and_a_second_apply_changes_nothing(run: Run, cloudwatch: Any) -> None:
    code, out = run("plan", str(SPEC_DIR), *PARAMS)
    desired = _desired()
    assert code == 0
    assert out.splitlines()[0] == f"+ create dashboard {DASHBOARD!r}"
    assert out.count("+ create alarm") == len(desired.alarms) == 13

    code, out = run("apply", str(SPEC_DIR), *PARAMS)
    assert code == 0 and out.count("applied: + create") == 14
    body = json.loads(cloudwatch.get_dashboard(DashboardName=DASHBOARD)["DashboardBody"])
    assert body == desired.dashboards[DASHBOARD]
    live = _alarms(cloudwatch)
    assert set(live) == set(desired.alarms)
    assert live[ERROR_RATE]["AlarmActions"] == [TOPIC] and live[ERROR_RATE]["Threshold"] == 2.0

    assert run("apply", str(SPEC_DIR), *PARAMS) == (0, "no changes\n")
    assert run("drift", str(SPEC_DIR), *PARAMS) == (0, "no drift\n")


def test_plan_prints_the_diff_of_a_change_and_drift_exits_2(run: Run, tmp_path: Path) -> None:
    assert run("apply", str(SPEC_DIR), *PARAMS)[0] == 0
    changed = tmp_path / "order-service.yaml"
    text = (SPEC_DIR / "order-service.yaml").read_text()
    changed.write_text(text.replace("server_error_rate: {above: 2, periods: 5}",
                                    "server_error_rate: {above: 5, periods: 3}")
                       .replace("cluster: production", "cluster: staging"))

    code, out = run("plan", str(changed), *PARAMS)
    assert code == 0
    assert (f"~ update alarm {ERROR_RATE!r}\n"
            '    AlarmDescription: "5xx responses above 2% of requests for 5 x 60 s" -> '
            '"5xx responses above 5% of requests for 3 x 60 s"\n'
            "    EvaluationPeriods: 5 -> 3\n"
            "    DatapointsToAlarm: 5 -> 3\n"
            "    Threshold: 2.0 -> 5.0\n") in out
    assert (f"~ update dashboard {DASHBOARD!r}\n"
            '    widgets[7].properties.metrics[0][3]: "production" -> "staging"\n') in out
    assert run("drift", str(changed), *PARAMS)[0] == 2

    code, out = run("apply", str(changed), *PARAMS)
    assert code == 0 and out.count("applied: ~ update") == 3  # the dashboard and 2 error-rate alarms
    assert run("drift", str(changed), *PARAMS) == (0, "no drift\n")


def test_drift_reports_changes_made_in_the_console(run: Run, cloudwatch: Any) -> None:
    assert run("apply", str(SPEC_DIR), *PARAMS)[0] == 0
    body = json.loads(cloudwatch.get_dashboard(DashboardName=DASHBOARD)["DashboardBody"])
    body["widgets"][1]["properties"]["title"] = "edited by hand"
    cloudwatch.put_dashboard(DashboardName=DASHBOARD, DashboardBody=json.dumps(body))
    cloudwatch.delete_alarms(AlarmNames=[ERROR_RATE])

    code, report = run_json(run, "drift", str(SPEC_DIR), *PARAMS)
    assert code == 2 and report["drift"] is True
    changes = {(c["action"], c["kind"], c["name"]): c for c in report["changes"]}
    assert changes.keys() == {("update", "dashboard", DASHBOARD), ("create", "alarm", ERROR_RATE)}
    assert changes["update", "dashboard", DASHBOARD]["fields"] == ["widgets[1].properties.title"]


def test_only_resources_with_the_prefix_are_touched(run: Run, cloudwatch: Any) -> None:
    mine_stale = "tracekit-retired-service"
    body = json.dumps({"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 2,
                                    "properties": {"markdown": "hand-made"}}]})
    for name in ("ops-overview", mine_stale):
        cloudwatch.put_dashboard(DashboardName=name, DashboardBody=body)
    for name in ("ops-cpu", f"{mine_stale} 5xx"):
        cloudwatch.put_metric_alarm(AlarmName=name, Namespace="AWS/EC2", MetricName="CPUUtilization",
                                    Statistic="Average", Period=60, EvaluationPeriods=1, Threshold=90,
                                    ComparisonOperator="GreaterThanThreshold")

    code, out = run("apply", str(SPEC_DIR), *PARAMS)
    assert code == 0
    assert f"applied: - delete dashboard {mine_stale!r}" in out
    assert f"applied: - delete alarm '{mine_stale} 5xx'" in out
    assert "ops-" not in out
    names = {d["DashboardName"] for d in cloudwatch.list_dashboards()["DashboardEntries"]}
    assert names == {"ops-overview", DASHBOARD}
    assert "ops-cpu" in _alarms(cloudwatch)

    code, out = run("plan", str(SPEC_DIR), *PARAMS, "--prefix", "ops-")  # the prefix decides
    assert code == 0 and "tracekit-" not in out
    assert "- delete dashboard 'ops-overview'\n- delete alarm 'ops-cpu'\n" in out
    assert "+ create dashboard 'ops-order-service'" in out


def test_export_writes_yaml_that_plans_to_no_changes(run: Run, cloudwatch: Any, tmp_path: Path) -> None:
    assert run("apply", str(SPEC_DIR), *PARAMS)[0] == 0
    cloudwatch.put_dashboard(DashboardName="not-ours", DashboardBody='{"widgets": []}')
    exported = tmp_path / "exported.yaml"
    assert run("export", "-o", str(exported)) == (0, "")

    doc = yaml.safe_load(exported.read_text())
    assert [d["DashboardName"] for d in doc["dashboards"]] == [DASHBOARD]
    assert len(doc["alarms"]) == 13
    assert run("plan", str(exported)) == (0, "no changes\n")
    assert run("validate", str(exported), aws=False) == (0, "ok: 1 dashboards, 13 alarms\n")

    # the exported file is enough to rebuild an emptied account
    cloudwatch.delete_dashboards(DashboardNames=[DASHBOARD])
    cloudwatch.delete_alarms(AlarmNames=list(_desired().alarms))
    assert run("apply", str(exported))[0] == 0
    assert run("drift", str(SPEC_DIR), *PARAMS) == (0, "no drift\n")


def test_json_output_and_exit_codes(run: Run, tmp_path: Path) -> None:
    code, report = run_json(run, "plan", str(SPEC_DIR), *PARAMS)
    assert code == 0
    first = {k: report["changes"][0][k] for k in ("kind", "action", "name")}
    assert first == {"kind": "dashboard", "action": "create", "name": DASHBOARD}
    bad = tmp_path / "bad.yaml"
    shutil.copy(SPEC_DIR / "order-service.yaml", bad)
    code, report = run_json(run, "apply", str(bad))  # no --param alarm_topic
    assert code == 1 and report["ok"] is False
    assert report["problems"][0]["line"] == 7 and "alarm_topic" in report["problems"][0]["problem"]


def test_an_unreachable_endpoint_is_one_line_and_exit_1(capsys: Any) -> None:
    code = main(["dashboards", "plan", str(SPEC_DIR), *PARAMS, "--endpoint-url",
                 "http://127.0.0.1:9", "--region", "us-east-1"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("error: Could not connect to the endpoint URL") and out.count("\n") == 1
