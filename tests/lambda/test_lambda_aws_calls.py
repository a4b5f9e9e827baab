"""The layer's exec wrapper traces AWS SDK calls by default (opt out: ``TRACEKIT_INSTRUMENT=none``),
loading botocore's instrumentation only for a function whose module loaded botocore."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lambda_runtime_api import Function

from support.udp_receiver import UdpReceiver
from support.xray_schema import validate_document
from tracekit.aws_lambda import entry
from tracekit.tracing import instrument

SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "python_dateutil", "six", "urllib3")
"""What Lambda's Python runtime ships besides the runtime client: the AWS SDK."""

NO_SDK = '''
import sys

def handler(event, context):
    loaded = (m for m in sys.modules if m.startswith(("opentelemetry.instrumentation", "wrapt")))
    return {"loaded": sorted(loaded)}
'''
HANDLER = '''
import sys
import boto3

def handler(event, context):
    sqs = boto3.client("sqs", endpoint_url="{moto}", aws_access_key_id="t", aws_secret_access_key="t",
                       region_name="us-east-1")
    sqs.list_queues()
    return {{"loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry.instrumentation"))}}
'''


@pytest.fixture
def var_runtime_with_sdk(var_runtime: Path, tmp_path: Path) -> Path:
    """/var/runtime as Lambda has it: the runtime client and boto3/botocore."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    runtime = tmp_path / "var-runtime"
    runtime.mkdir()
    for entry_path in [*var_runtime.iterdir(), *site.iterdir()]:
        base = entry_path.name.split("-")[0].split(".")[0].lower()
        if entry_path.parent == var_runtime or base in SDK:
            (runtime / entry_path.name).symlink_to(entry_path.resolve())
    return runtime


def test_wrapped_function_traces_its_aws_calls(
    tmp_path: Path, opt_dir: Path, var_runtime_with_sdk: Path, daemon: UdpReceiver, moto: str,
    start_function: Callable[..., Function],
) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (task / "app.py").write_text(textwrap.dedent(HANDLER.format(moto=moto)))
    function = start_function(task, "app.handler", wrapper=opt_dir / "tracekit-instrument",
                              python_path=f"{task}:{opt_dir / 'python'}:{var_runtime_with_sdk}",
                              python_args=("-S",))
    kind, body, _ = function.invoke({}, "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
    assert kind == "response", function.output()
    assert "opentelemetry.instrumentation.botocore" in body["loaded"]
    doc = daemon.wait_for(1)[0]
    validate_document(doc)
    calls = [s for s in doc.get("subsegments", ()) if s.get("namespace") == "aws"]
    assert [(c["name"], c["aws"]["operation"]) for c in calls] == [("sqs", "ListQueues")]

    (task / "plain.py").write_text(NO_SDK)
    function = start_function(task, "plain.handler", wrapper=opt_dir / "tracekit-instrument",
                              python_path=f"{task}:{opt_dir / 'python'}:{var_runtime_with_sdk}",
                              python_args=("-S",))
    kind, body, _ = function.invoke({}, "Root=1-5759e988-bd862e3fe1be46a994272794;Sampled=1")
    assert (kind, body) == ("response", {"loaded": []}), function.output()


@pytest.fixture
def clean_instrumentation() -> Iterator[None]:
    instrument.disable()
    yield
    instrument.disable()


def test_opt_out_and_own_lists_leave_the_default_alone(
    monkeypatch: pytest.MonkeyPatch, clean_instrumentation: None
) -> None:
    monkeypatch.setenv("TRACEKIT_INSTRUMENT", "none")
    entry.trace_aws_calls()
    assert instrument.enabled() == []
    monkeypatch.delenv("TRACEKIT_INSTRUMENT")
    entry.trace_aws_calls()  # botocore is already imported here: instrumented at once
    assert instrument.enabled() == ["botocore"]
