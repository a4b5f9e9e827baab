"""``tracekit emf-validate`` on documents tracekit wrote and on broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from emf_helpers import Capture

import tracekit.metrics as metrics
from tracekit.cli import main


def test_emf_validate_accepts_our_output_and_names_problems(
    capture: Capture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(120):
        metrics.count(f"m{i}")
    metrics.flush()
    good = tmp_path / "good.log"
    good.write_text(capture.stream.getvalue())
    assert main(["emf-validate", str(good)]) == 0
    assert "2 documents, 0 invalid" in capsys.readouterr().err
    bad = tmp_path / "bad.log"
    bad.write_text(
        capture.stream.getvalue().replace('"Unit":"Count"', '"Unit":"Counts"', 1) + "{\n"
    )
    assert main(["emf-validate", str(bad)]) == 1
    out = capsys.readouterr()
    assert f"{bad}:1: $._aws.CloudWatchMetrics[0].Metrics[0].Unit: metric 'm0': unit 'Counts'" in (
        out.out
    )
    assert f"{bad}:3: not JSON" in out.out
    assert "3 documents, 2 invalid" in out.err
