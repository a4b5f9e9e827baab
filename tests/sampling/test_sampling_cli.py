"""The other sampling commands: --help everywhere, explain, cost, import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tracekit.cli import main
from tracekit.sampling.controlplane import ControlPlane

RULES_DIR = Path(__file__).resolve().parents[2] / "sampling"
COMMANDS = ("validate", "plan", "apply", "export", "drift", "explain", "cost", "import", "serve")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["sampling", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if "--json" in argv else out


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sampling", command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    if command in ("plan", "apply", "export", "drift", "explain"):
        for flag in ("--region", "--endpoint-url", "--profile", "--json"):
            assert flag in out


def test_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "explain", str(RULES_DIR), "--service", "order-service",
                    "--method", "GET", "--path", "/orders/1")
    assert code == 0
    assert out.splitlines() == [
        "  no  'Health checks (no sampling)' (priority 1): URLPath '/health' does not match "
        "'/orders/1'",
        "  no  'High-priority transactions' (priority 10): URLPath '/api/payment/*' does not "
        "match '/orders/1'",
        "  no  'API calls' (priority 20): HTTPMethod 'POST' does not match 'GET'",
        "MATCH 'Default' (priority 10000): reservoir 1/s, then 5%",
    ]


def test_explain_live(capsys: pytest.CaptureFixture[str], seeded: ControlPlane) -> None:
    code, data = run(capsys, "explain", "--live", "--endpoint-url", seeded.url, "--json",
                     "--service", "x", "--method", "PUT", "--path", "/api/payment/3")
    assert code == 0 and data["matched"] == "High-priority transactions"
    assert [s["matches"] for s in data["steps"]] == [False, True]


def test_cost(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    profile = tmp_path / "traffic.yaml"
    profile.write_text("""requests:
  - {service: order-service, method: POST, path: /orders/1, share: 0.5}
  - {service: lb, method: GET, path: /health, share: 0.2}
  - {service: shop, method: GET, path: /api/payment/x, share: 0.1}
""")
    code, data = run(capsys, "cost", str(RULES_DIR), "--rps", "100", "--traffic", str(profile),
                     "--json")
    assert code == 0
    per_rule = {r["rule"]: r["traces_per_second"] for r in data["rules"]}
    assert per_rule == pytest.approx({"Health checks (no sampling)": 0.0,
                                      "High-priority transactions": 10.0,
                                      "API calls": 2 + 0.1 * 48, "Default": 1 + 0.05 * 19})
    month = sum(per_rule.values()) * 30 * 86400
    assert data["traces_per_month"] == round(month)
    assert data["monthly_cost_usd"] == round((month - 100_000) / 1e6 * 5.0, 2)
    code, text = run(capsys, "cost", str(RULES_DIR), "--rps", "0.5", "--price-per-million", "1")
    assert code == 0 and text.strip().endswith(
        "1,296,000 traces/month: $1.20/month at $1.00 per million after 100,000 free")
    profile.write_text("requests:\n  - {service: a, share: 0.9}\n  - {path: /x, share: 0.2, x: 1}\n")
    assert main(["sampling", "cost", str(RULES_DIR), "--rps", "1", "--traffic", str(profile)]) == 2
    assert capsys.readouterr().err == (
        f"tracekit sampling cost: {profile}: requests[1].x=1 is not valid: expected only the keys "
        "service, service_type, host, method, path, share\n")


def test_import_sdk_local_rules(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sdk = tmp_path / "sampling-rules.json"
    sdk.write_text(json.dumps({"version": 2, "default": {"fixed_target": 1, "rate": 0.1},
                               "rules": [{"description": "Player moves", "host": "*",
                                          "http_method": "*", "url_path": "/api/move/*",
                                          "fixed_target": 0, "rate": 0.05}]}))
    out = tmp_path / "rules.yaml"
    assert run(capsys, "import", str(sdk), "-o", str(out))[0] == 0
    assert "RuleName: Player moves" in out.read_text()
    code, text = run(capsys, "validate", str(out))
    assert code == 0 and text.startswith("ok: 2 rules (Player moves, Default)")
    code, text = run(capsys, "import", str(sdk), "--json")
    assert code == 0 and text["rules"][0]["RuleName"] == "Player moves"
    code, text = run(capsys, "import", str(out))  # a tracekit file is not an SDK file
    assert (code, text.strip()) == (1, f"{out}:1: version: not an X-Ray SDK local-rules file "
                                       "(accepted: a JSON object with 'version' (1 or 2) and "
                                       "'default')")


def test_serve_refuses_bad_rules_and_a_taken_port(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {RuleName: x, Priority: 0, FixedRate: 0, ReservoirSize: 0}\n")
    code, out = run(capsys, "serve", "--port", "0", "--rules", str(bad))
    assert (code, out) == (1, f"{bad}:2: Priority: 0 is out of range (accepted: an integer from "
                              "1 to 9999)\n")
    taken = ControlPlane().start()
    try:
        port = taken.url.rsplit(":", 1)[1]
        code, out = run(capsys, "serve", "--port", port)
        assert code == 1 and out.startswith(f"error: cannot serve on 127.0.0.1:{port}")
    finally:
        taken.stop()


def test_serve_command_with_boto3(tmp_path: Path) -> None:
    import socket

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekit.sampling.cli", "serve", "--port", str(port),
         "--rules", str(RULES_DIR), "--db", str(tmp_path / "cp.db")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        xray = boto3.client("xray", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        records = xray.get_sampling_rules()["SamplingRuleRecords"]
        assert records[0]["SamplingRule"]["RuleName"] == "Health checks (no sampling)"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_validate_without_paths_reads_sampling_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sampling").mkdir()
    (tmp_path / "sampling" / "rules.yaml").write_text((RULES_DIR / "rules.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    code, out = run(capsys, "validate")
    assert code == 0 and out.startswith("ok: 4 rules")
    (tmp_path / "sampling" / "rules.yaml").unlink()
    code, out = run(capsys, "validate")
    assert code == 1 and "sampling" in out
