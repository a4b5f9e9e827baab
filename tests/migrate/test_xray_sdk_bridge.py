"""The X-Ray SDK bridge in one process: SDK entities and tracekit spans nest in one trace, the SDK's
entity API keeps its meaning, tracekit samples and sends, and a bridge failure never reaches the app."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.exceptions.exceptions import SegmentNotFoundException
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

import tracekit
import tracekit.xray_sdk
from support.xray_schema import validate_document
from tracekit._shared import stats
from tracekit.tracing import provider


@pytest.fixture
def bridged(xray_daemon: Any) -> Iterator[Any]:
    stats.reset()
    tracekit.configure(service="orders", exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=ALWAYS_ON)
    assert tracekit.xray_sdk.install()
    yield xray_daemon
    tracekit.xray_sdk.uninstall()
    provider.shutdown()


def only_document(daemon: Any) -> dict[str, Any]:
    tracekit.force_flush()
    docs = daemon.wait_for(1)
    assert len(docs) == 1, docs
    validate_document(docs[0])
    return docs[0]


def test_sdk_entities_and_tracekit_spans_nest_both_ways(bridged: Any) -> None:
    @xray_recorder.capture("price_order")
    def price() -> int:
        assert xray_recorder.get_trace_entity() is xray_recorder.current_subsegment()
        assert xray_recorder.current_subsegment().name == "price_order"
        with tracekit.span("lookup_discount"):
            xray_recorder.current_subsegment().put_annotation("discount", 5)  # the tracekit span
            tracekit.annotate("tier", "gold")
        return 95

    with tracekit.span("handle_request") as server_span:
        xray_recorder.current_segment().set_user("customer-42")
        assert price() == 95
        assert xray_recorder.current_subsegment() is None  # the segment itself, as under the SDK
    doc = only_document(bridged)
    assert (doc["name"], doc["user"]) == ("orders", "customer-42")
    assert doc["trace_id"] == tracekit.xray.ids.to_xray_trace_id(server_span.get_span_context().trace_id)
    (priced,) = doc["subsegments"]
    assert (priced["name"], priced["namespace"]) == ("price_order", "local")
    (lookup,) = priced["subsegments"]
    assert lookup["name"] == "lookup_discount"
    assert lookup["annotations"] == {"discount": 5, "tier": "gold"}


def test_sdk_code_in_worker_threads_keeps_its_parent(bridged: Any) -> None:
    @xray_recorder.capture("fetch_line")
    def fetch(n: int) -> int:
        xray_recorder.current_subsegment().put_annotation("line", n)
        return n

    with xray_recorder.in_segment("batch"), ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(fetch, [1, 2, 3])) == [1, 2, 3]  # the SDK alone: context missing here
    doc = only_document(bridged)
    assert sorted(s["annotations"]["line"] for s in doc["subsegments"]) == [1, 2, 3]


def test_begin_and_end_calls_metadata_http_and_status(bridged: Any) -> None:
    segment = xray_recorder.begin_segment("checkout")
    sub = xray_recorder.begin_subsegment("charge", "remote")
    sub.put_metadata("card", {"brand": "visa", "password": "hunter2"}, "payments")
    sub.put_http_meta("url", "https://pay.example.com/charge")
    sub.put_http_meta("method", "POST")
    sub.put_http_meta("status", 429)
    xray_recorder.end_subsegment()
    segment.apply_status_code(503)
    xray_recorder.end_segment()
    doc = only_document(bridged)
    assert (doc["name"], doc["fault"]) == ("checkout", True)
    (charge,) = doc["subsegments"]
    assert charge["namespace"] == "remote" and charge["throttle"] is True and charge["error"] is True
    assert charge["http"] == {"request": {"url": "https://pay.example.com/charge", "method": "POST"},
                              "response": {"status": 429}}
    assert charge["metadata"]["payments"]["card"] == {"brand": "visa", "password": "[REDACTED]"}
    assert stats.stats()["xray_sdk.entities"] == 1  # the SDK handed its segment over, nothing sent


def test_the_sampling_decision_is_tracekits(xray_daemon: Any) -> None:
    tracekit.configure(service="orders", exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
                       sampler=ALWAYS_OFF)
    tracekit.xray_sdk.install()
    try:
        with xray_recorder.in_segment("unsampled") as segment:
            assert segment.sampled is False and xray_recorder.is_sampled() is False
            with xray_recorder.in_subsegment("child") as child:
                child.put_annotation("k", 1)
        tracekit.force_flush()
        assert xray_daemon.documents() == []
    finally:
        tracekit.xray_sdk.uninstall()
        provider.shutdown()


def test_configure_keeps_its_meaning_or_says_once_what_tracekit_does(bridged: Any, caplog: Any) -> None:
    class Emitter:
        sent: list[Any] = []

        def send_entity(self, entity: Any) -> None:
            self.sent.append(entity)

        def set_daemon_address(self, address: str) -> None:
            return None

    with caplog.at_level(logging.WARNING, logger="tracekit"):
        for _ in range(2):
            xray_recorder.configure(service="renamed", emitter=Emitter(), sampling=True,
                                    daemon_address="127.0.0.1:3000", context_missing="LOG_ERROR")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all(line.startswith("tracekit X-Ray SDK bridge: ") for line in lines)
    assert any("emitter=" in line for line in lines) and any("sampling=True" in line for line in lines)
    with xray_recorder.in_segment():  # the service name given to configure names the segment
        pass
    assert only_document(bridged)["name"] == "renamed" and Emitter.sent == []


def test_context_missing_keeps_the_sdks_meaning(bridged: Any, monkeypatch: Any) -> None:
    assert xray_recorder.begin_subsegment("orphan") is None  # LOG_ERROR: logged, nothing raised
    xray_recorder.configure(context_missing="RUNTIME_ERROR")
    try:
        with pytest.raises(SegmentNotFoundException):
            xray_recorder.current_segment()
    finally:
        xray_recorder.configure(context_missing="LOG_ERROR")


def test_a_failing_span_start_never_reaches_the_application(bridged: Any, monkeypatch: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(xray_recorder.context._tracer, "start_span", broken)

    @xray_recorder.capture("work")
    def work() -> str:
        return "done"

    with xray_recorder.in_segment("svc"):
        assert work() == "done"
    assert stats.stats()["errors.xray_sdk.start"] == 1  # then unsampled: its children start no span


def test_flask_middleware_left_in_place_continues_the_callers_trace(bridged: Any) -> None:
    from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
    from flask import Flask

    app = Flask("orders")
    XRayMiddleware(app, xray_recorder)

    @app.route("/orders/<order_id>")
    def get_order(order_id: str) -> str:
        with xray_recorder.in_subsegment("load"):
            return order_id

    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    response = app.test_client().get("/orders/o-1", headers={"X-Amzn-Trace-Id": header})
    assert response.status_code == 200 and response.data == b"o-1"
    doc = only_document(bridged)
    assert (doc["trace_id"], doc["parent_id"]) == ("1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8")
    assert doc["http"]["request"]["url"] == "http://localhost/orders/o-1"
    assert doc["http"]["response"]["status"] == 200
    assert [s["name"] for s in doc["subsegments"]] == ["load"]


def test_without_aws_xray_sdk_install_says_so_in_one_line() -> None:
    code = ("import sys; sys.modules['aws_xray_sdk'] = None; import tracekit.xray_sdk; "
            "print(tracekit.xray_sdk.install(), tracekit.stats()['xray_sdk.missing'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "1"]
    assert len(done.stderr.strip().splitlines()) == 1 and "tracekit-aws[xray-sdk]" in done.stderr
