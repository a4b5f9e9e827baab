"""Flush at exit, and validate() on arbitrary JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tracekit.metrics import emf


def test_pending_metrics_are_flushed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "emf.log"
    script = (
        "import tracekit.metrics as m\n"
        f"m.configure('Exit/Test', outputs=['file:{path}'], env={{}})\n"
        "m.count('at_exit', 3)\n"  # no flush(): the atexit hook must write it
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    (doc,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert doc["at_exit"] == 3 and emf.validate(doc) == []


_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=30,
)
_metric = st.fixed_dictionaries(
    {"Name": _json | st.just("m")}, optional={"Unit": _json, "StorageResolution": _json}
)
_directive = st.fixed_dictionaries(
    {
        "Namespace": _json,
        "Dimensions": _json | st.lists(st.lists(_json)),
        "Metrics": st.lists(_metric),
    }
)
_aws_like = st.fixed_dictionaries(
    {
        "_aws": st.fixed_dictionaries(
            {"Timestamp": _json, "CloudWatchMetrics": st.lists(_directive)}
        )
    },
    optional={"m": _json, "a": _json},
)


@settings(max_examples=200, deadline=None)
@given(doc=_json | _aws_like)
def test_validate_never_raises_on_arbitrary_json(doc: object) -> None:
    errors = emf.validate(doc)
    assert isinstance(errors, list) and all(isinstance(e, str) for e in errors)
