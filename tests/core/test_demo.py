"""``tracekit demo``: one trace as X-Ray documents and as OTLP spans, with the same ids."""

from __future__ import annotations

import re
import subprocess
import sys


def demo(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracekit.cli", "demo", *argv],
                          capture_output=True, text=True, timeout=60)


def section(out: str, title: str) -> list[str]:
    """The lines of the section whose heading starts with ``== title``, up to the next heading."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("== " + title))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("== ")), len(lines))
    return lines[start:end]


def test_one_trace_in_both_views_with_the_same_ids() -> None:
    result = demo()
    assert result.returncode == 0, result.stdout + result.stderr
    xray = section(result.stdout, "X-Ray")
    otlp = section(result.stdout, "OTLP")
    xray_trace = re.search(r"trace (1-[0-9a-f]{8}-[0-9a-f]{24})", xray[0])
    otlp_trace = re.search(r"trace ([0-9a-f]{32})", otlp[0])
    assert xray_trace and otlp_trace
    assert xray_trace[1].replace("-", "")[1:] == otlp_trace[1]
    assert xray[1].startswith("demo-shop [segment]")
    assert any("charge [subsegment]" in line and "card declined" in line for line in xray)
    xray_ids = [m[1] for line in xray[1:] if (m := re.search(r" id=([0-9a-f]{16})$", line))]
    assert len(xray_ids) == 7 == len(set(xray_ids))

    header = otlp.index(next(line for line in otlp if line.startswith("span id")))
    table = otlp[header + 1:otlp.index("", header)]
    rows = [line.split(maxsplit=2) for line in table]
    spans = {span_id: (parent, name.strip()) for span_id, parent, name in rows}
    assert set(spans) == set(xray_ids)
    assert [name for parent, name in spans.values() if parent == "-"] == ["checkout"]
    assert all(parent in spans for parent, _ in spans.values() if parent != "-")
    assert sorted(name for _, name in spans.values()) == [
        "charge", "checkout", "notify", "reserve", "reserve", "send", "send"]
    assert "ids agree: yes (2 traces, 14 spans" in result.stdout


def test_one_order() -> None:
    result = demo("--orders", "1")
    assert result.returncode == 0 and "ids agree: yes (1 trace, 7 spans" in result.stdout
