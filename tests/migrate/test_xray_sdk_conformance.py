"""The X-Ray SDK bridge against the real X-Ray SDK: the same order service, the same trees.

examples/migrate_xray_sdk/order_service.py (captured functions, patch_all(), DynamoDB GetItem on moto
server, an HTTP call to a local server, add_exception, annotations, metadata) runs twice, each in its
own interpreter so the SDK's global recorder starts clean: once as it is (the SDK's UDP emitter sends
to a stand-in daemon), once through with_tracekit.py (the one-line change: tracekit sends). Ids and
times aside, the documents must be the same. Left out of the comparison, as the README's migration guide
explains: ``aws.xray`` and the segment's ``service`` (they describe the sender) and exception stacks
beyond the innermost frame (with_tracekit.py adds an outer one).
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
def test_environment_variable_bridges_without_the_code_change(orders_table: str, payments: Any,
                                                              tmp_path: Path) -> None:
    alone = run("order_service.py", orders_table, payments.url, TRACEKIT_XRAY_SDK_BRIDGE="true")
    # order_service.py alone: nothing calls tracekit, so the variable has no effect (SDK documents)
    assert alone[0]["aws"]["xray"]["sdk"] == "X-Ray for Python"
    probe = tmp_path / "configure_first.py"  # an application that configures tracekit, then the SDK code
    probe.write_text("import runpy, tracekit\ntracekit.configure()\n"
                     f"runpy.run_path({str(EXAMPLE / 'order_service.py')!r}, run_name='__main__')\n")
    docs = run(str(probe), orders_table, payments.url, TRACEKIT_XRAY_SDK_BRIDGE="true")
    assert [tree(d) for d in docs] == [tree(d) for d in alone]
    assert docs[0]["aws"]["xray"]["sdk"] == "tracekit (OpenTelemetry)"
