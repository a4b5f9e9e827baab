"""The ``tracekit`` command line as a user meets it: bad input is one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekit.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
RULES = str(ROOT / "sampling")


def tracekit(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``tracekit ARGV`` in a fresh interpreter, as from a shell."""
    return subprocess.run([sys.executable, "-m", "tracekit.cli", *argv], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess[str], prefix: str, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix + ": "), lines[0]
    for word in words:
        assert word in lines[0]


def test_missing_traffic_file(tmp_path: Path) -> None:
    missing = tmp_path / "traffic.yaml"
    result = tracekit("sampling", "cost", RULES, "--rps", "5", "--traffic", str(missing))
    assert_one_line_error(result, "tracekit sampling cost", str(missing), "No such file")
    assert result.stdout == ""


def test_emf_validate_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "emf.jsonl"
    result = tracekit("emf-validate", str(missing))
    assert_one_line_error(result, "tracekit emf-validate", str(missing), "No such file")


def test_a_directory_given_as_a_file(tmp_path: Path) -> None:
    assert_one_line_error(tracekit("emf-validate", str(tmp_path)), "tracekit emf-validate",
                          str(tmp_path), "directory")


def test_malformed_traffic_file_names_the_field(tmp_path: Path) -> None:
    traffic = tmp_path / "traffic.yaml"
    traffic.write_text("requests:\n  - {service: a, share: 0.9}\n  - {path: /x, share: 0.2, x: 1}\n")
    result = tracekit("sampling", "cost", RULES, "--rps", "1", "--traffic", str(traffic))
    assert_one_line_error(result, "tracekit sampling cost", f"{traffic}: requests[1].x", "share")
    traffic.write_text("requests: [\n")
    result = tracekit("sampling", "cost", RULES, "--rps", "1", "--traffic", str(traffic))
    assert_one_line_error(result, "tracekit sampling cost", str(traffic), "YAML")


@pytest.mark.parametrize("argv", [["sampling", "cost", "--rps"], ["demo", "--orders", "x"],
                                  ["emf-validate", "--nope"]])
def test_usage_errors_are_one_line(argv: list[str]) -> None:
    result = tracekit(*argv)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("tracekit") and "(see tracekit" in result.stderr


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


def test_profile_means_an_aws_profile_everywhere() -> None:
    profiles = [(parser.prog, action.help) for parser in all_parsers(build_parser())
                for action in parser._actions if "--profile" in action.option_strings]
    assert len(profiles) >= 5
    assert all("AWS" in str(text) for _, text in profiles), profiles
    assert "tracekit sampling cost" not in {prog for prog, _ in profiles}


@pytest.mark.parametrize(("argv", "flag"), [
    (["sampling", "cost", RULES, "--rps", "-5"], "--rps"),
    (["sampling", "cost", RULES, "--rps", "0"], "--rps"),
    (["sampling", "cost", RULES, "--rps", "nan"], "--rps"),
    (["sampling", "cost", RULES, "--rps", "1", "--free-traces", "-1"], "--free-traces"),
    (["sampling", "cost", RULES, "--rps", "1", "--price-per-million", "-2"], "--price-per-million"),
    (["demo", "--orders", "0"], "--orders"),
])
def test_negative_or_zero_counts_and_rates_are_refused(argv: list[str], flag: str) -> None:
    result = tracekit(*argv)
    assert_one_line_error(result, f"tracekit {argv[0]}" + (" cost" if argv[0] == "sampling" else ""),
                          f"argument {flag}", repr(argv[-1]))
    assert "positive" in result.stderr or "non-negative" in result.stderr
    assert result.stdout == ""


def test_sidecar_counts_use_the_same_check() -> None:
    result = tracekit("sidecar", "--workers", "0")
    assert result.returncode == 2
    assert "--workers='0' is not valid: expected a positive integer" in result.stderr


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    lines = tmp_path / "emf.jsonl"
    lines.write_text("not json\n" * 50_000)
    result = subprocess.run(
        f"{sys.executable} -m tracekit.cli emf-validate {lines} | head -1", shell=True,
        capture_output=True, text=True, timeout=60,
    )
    assert result.stdout.startswith(f"{lines}:1: not JSON") and result.stderr == ""


@pytest.mark.parametrize("value", ["-1", "65536", "x"])
def test_serve_refuses_a_port_out_of_range(value: str) -> None:
    result = tracekit("sampling", "serve", "--port", value)
    assert_one_line_error(result, "tracekit sampling serve", "argument --port", "port", repr(value))
