"""``import tracekit`` is cheap (its settings at most); its sub-packages load as attributes on first use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tracekit

SUBPACKAGES = ("metrics", "logs", "flask", "fastapi", "sampling")

PROBE = """
import json, sys
import tracekit
before = sorted(m for m in sys.modules if m.startswith(("tracekit.", "opentelemetry", "flask")))
found = {name: getattr(tracekit, name).__name__ for name in sys.argv[1:]}
print(json.dumps({"before": before, "found": found}))
"""


def test_subpackages_resolve_as_attributes_and_load_only_when_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *SUBPACKAGES], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["found"] == {name: f"tracekit.{name}" for name in SUBPACKAGES}
    heavy = tuple(f"tracekit.{name}" for name in (*SUBPACKAGES, "web", "tracing", "xray"))
    loaded = [m for m in result["before"] if m.startswith((*heavy, "opentelemetry", "flask"))]
    assert loaded == [], "import tracekit loaded more than its settings"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tracekit.nope  # noqa: B018
