"""The X-Ray SDK bridge against the real X-Ray SDK: the same order service, the same trees.

examples/migrate_xray_sdk/order_service.py (captured functions, patch_all(), DynamoDB GetItem on moto
server, an HTTP call to a local server, add_exception, annotations, metadata) runs twice, each in its
own interpreter so the SDK's global recorder starts clean: once as it is (the SDK's UDP emitter sends
to a stand-in daemon), once through with_tracekit.py (the one-line change: tracekit sends). Ids and
times aside, the documents must be the same; the differences that remain are listed in
``EXPECTED_DIFFERENCES`` and in the README's migration guide.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.udp_receiver import UdpReceiver
from support.xray_schema import validate_document

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "migrate_xray_sdk"
COMPARED = ("name", "namespace", "annotations", "metadata", "http", "aws", "sql", "error", "fault",
            "throttle", "user")
EXPECTED_DIFFERENCES = {
    "aws.xray": "the sender's sdk block: 'X-Ray for Python 2.15' vs 'tracekit (OpenTelemetry)'",
    "service": "the SDK adds service.runtime/runtime_version; tracekit adds service.version when set",
    "stack": "exception frames: the run through with_tracekit.py has one more outer frame",
}


def run(script: str, moto: str, payments_url: str, **env: str) -> list[dict[str, Any]]:
    """Run the example ``script`` for o-1 (paid) and o-2 (declined); the documents it sent."""
    with UdpReceiver() as daemon:
        done = subprocess.run(
            [sys.executable, script, "o-1", "o-2"], cwd=EXAMPLE, capture_output=True, text=True,
            timeout=60, check=False,
            env={**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": moto, "PAYMENTS_URL": f"{payments_url}/charge",
                 "AWS_XRAY_DAEMON_ADDRESS": daemon.address, "OTEL_TRACES_SAMPLER": "always_on", **env},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ['{"order_id":', '"o-1",', '"status":', '"paid"}',
                                       '{"order_id":', '"o-2",', '"status":', '"declined"}']
        docs = daemon.wait_for(2)
        assert daemon.errors() == []
    for doc in docs:
        validate_document(doc)
    return docs


def tree(doc: dict[str, Any]) -> dict[str, Any]:
    """What must match: the compared fields, children by start time, exceptions without ids/stacks."""
    out = copy.deepcopy({key: doc[key] for key in COMPARED if key in doc})
    aws = {k: v for k, v in out.get("aws", {}).items() if k not in ("xray", "request_id")}
    out.pop("aws", None)
    if aws:
        out["aws"] = aws
    cause = doc.get("cause")
    if isinstance(cause, dict):
        out["cause"] = [(e["type"], e["message"], e.get("remote", False), e["stack"][0]["label"])
                        for e in cause["exceptions"]]
    elif cause is not None:
        out["cause"] = "id of an exception recorded below"
    kids = sorted(doc.get("subsegments", ()), key=lambda d: d["start_time"])
    if kids:
        out["subsegments"] = [tree(kid) for kid in kids]
    if "http" in out and "request" in out["http"] and "url" in out["http"]["request"]:
        out["http"]["request"]["url"] = re.sub(r":\d+", ":PORT", out["http"]["request"]["url"])
    return out


@pytest.mark.slow
def test_bridge_gives_the_tree_the_x_ray_sdk_sends(orders_table: str, payments: Any) -> None:
    alone = run("order_service.py", orders_table, payments.url)
    bridged = run("with_tracekit.py", orders_table, payments.url)
    assert [tree(d) for d in bridged] == [tree(d) for d in alone]
    # not only equal, but what the order service recorded (so equal empty trees cannot pass)
    declined = tree(bridged[1])
    assert declined["annotations"] == {"customer_tier": "gold"} and declined["user"] == "customer-42"
    order = declined["subsegments"][0]
    assert (order["name"], order["fault"], order["cause"]) == (
        "process_order", True, "id of an exception recorded below")
    load, pay = order["subsegments"]
    assert load["metadata"] == {"orders": {"items": 3}}
    assert load["subsegments"][0]["namespace"] == "aws"
    assert load["subsegments"][0]["aws"] == {"operation": "GetItem", "region": "us-east-1",
                                             "table_name": "orders", "consistent_read": True}
    assert pay["cause"] == [("PaymentDeclined", "payment of 500 declined (402)", False, "charge")]
    assert pay["subsegments"][0]["http"] == {"request": {"method": "post",
                                                                         "url": "http://127.0.0.1:PORT/charge"},
                                             "response": {"status": 402}}
    assert pay["subsegments"][0]["error"] is True


@pytest.mark.slow
def test_one_trace_across_the_call_and_nothing_sent_twice(orders_table: str, payments: Any) -> None:
    docs = run("with_tracekit.py", orders_table, payments.url)
    assert len(docs) == 2  # one document per request: the SDK's emitter stayed silent
    header = payments.requests[-1]["X-Amzn-Trace-Id"]
    http_call = docs[1]["subsegments"][0]["subsegments"][1]["subsegments"][0]
    assert header.startswith(f"Root={docs[1]['trace_id']};Parent={http_call['id']};Sampled=1")


@pytest.mark.slow
def test_environment_variable_bridges_without_the_code_change(orders_table: str, payments: Any) -> None:
    alone = run("order_service.py", orders_table, payments.url, TRACEKIT_XRAY_SDK_BRIDGE="true")
    # order_service.py alone: nothing calls tracekit, so the variable has no effect (SDK documents)
    assert alone[0]["aws"]["xray"]["sdk"] == "X-Ray for Python"
    code = "import tracekit; tracekit.configure(); import runpy; runpy.run_path('order_service.py', " \
           "run_name='__main__')"
    Path(EXAMPLE / "_env_bridge_probe.py").write_text(code)
    try:
        docs = run("_env_bridge_probe.py", orders_table, payments.url, TRACEKIT_XRAY_SDK_BRIDGE="true")
    finally:
        (EXAMPLE / "_env_bridge_probe.py").unlink()
    assert [tree(d) for d in docs] == [tree(d) for d in alone]
    assert docs[0]["aws"]["xray"]["sdk"] == "tracekit (OpenTelemetry)"
