"""End to end under the real runtime client: awslambdaric polling a local Runtime API server.

(a) a handler decorated with ``@tracekit.lambda_handler``; (b) an undecorated handler instrumented by
the layer's exec wrapper, with only the unpacked layer and the runtime client on ``sys.path``.
"""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from lambda_runtime_api import Function

from support.udp_receiver import UdpReceiver

ROOT_A, PARENT_A = "1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
ROOT_B = "1-5759e988-00000000000000000000000b"
ROOT_C, PARENT_C = "1-5759e988-00000000000000000000000c", "1111111111111111"
PRODUCER_ROOT, PRODUCER_PARENT = "1-67891233-abcdef012345678912345678", "2222222222222222"
ROOT_E, PARENT_E = "1-5759e988-00000000000000000000000e", "3333333333333333"

DECORATED = '''
import os, sys
import tracekit

log = tracekit.get_logger("app")

@tracekit.lambda_handler
def handler(event, context):
    log.info("handling", order=event.get("fail"))
    with tracekit.span("work"):
        pass
    if event.get("fail"):
        raise ValueError("bad order " + str(event["fail"]))
    return {"statusCode": event.get("status", 200), "loaded": loaded()}

HEAVY = ("boto3", "botocore", "google", "requests", "opentelemetry.exporter", "opentelemetry.sdk",
         "tracekit.sampling")

def loaded():  # none of these may load on the Lambda path unless configured
    return sorted(m for m in sys.modules if m.startswith(HEAVY))
'''

PLAIN = '''
import os, sys

def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("first call fails")
    import tracekit
    return {"tracekit": tracekit.__file__, "handler_env": os.environ["_HANDLER"],
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore"))}
'''


def _header(root: str, parent: str | None, sampled: int) -> str:
    return f"Root={root};" + (f"Parent={parent};" if parent else "") + f"Sampled={sampled}"


def _task(tmp_path: Path, name: str, source: str) -> Path:
    task = tmp_path / "task"
    task.mkdir(exist_ok=True)
    (task / f"{name}.py").write_text(textwrap.dedent(source))
    return task


def _cold_start_metrics(function: Function) -> int:
    return sum(1 for doc in function.emf() if "ColdStart" in doc)


def test_decorated_handler_under_awslambdaric(
    tmp_path: Path, daemon: UdpReceiver, start_function: Callable[..., Function]
) -> None:
    function = start_function(_task(tmp_path, "app", DECORATED), "app.handler")
    http_event = {
        "version": "2.0", "routeKey": "GET /orders/{id}", "rawPath": "/orders/7",
        "requestContext": {"domainName": "api.example.com",
                           "http": {"method": "GET", "path": "/orders/7", "sourceIp": "203.0.113.9"}},
    }

    kind, body, _ = function.invoke(http_event, _header(ROOT_A, PARENT_A, 1))
    assert (kind, body) == ("response", {"statusCode": 200, "loaded": []})  # none of HEAVY
    first = daemon.wait_for(1)[0]
    assert first["trace_id"] == ROOT_A and first["parent_id"] == PARENT_A
    assert first["type"] == "subsegment" and first["name"] == "app.handler"
    assert first["annotations"] == {"ColdStart": True, "http_route": "/orders/{id}"}
    assert first["aws"]["request_id"] and "fault" not in first
    assert first["http"] == {"request": {"method": "GET", "url": "https://api.example.com/orders/7",
                                         "client_ip": "203.0.113.9", "x_forwarded_for": True},
                             "response": {"status": 200}}
    assert [s["name"] for s in first["subsegments"]] == ["work"]

    kind, _, _ = function.invoke({"status": 200}, _header(ROOT_B, PARENT_A, 0))
    assert kind == "response"

    sqs_event = {"Records": [{"eventSource": "aws:sqs", "body": "{}",
                              "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders",
                              "attributes": {"AWSTraceHeader": _header(PRODUCER_ROOT, PRODUCER_PARENT, 1)}}]}
    kind, _, _ = function.invoke(sqs_event, _header(ROOT_C, PARENT_C, 1))
    assert kind == "response"
    third = daemon.wait_for(2)[1]
    assert third["trace_id"] == ROOT_C and third["parent_id"] == PARENT_C
    assert third["annotations"] == {"ColdStart": False}
    assert third["links"] == [{"trace_id": PRODUCER_ROOT, "id": PRODUCER_PARENT}]
    # Sampled=0: the second invocation sent nothing (its datagrams would have come before these).
    assert [d["trace_id"] for d in daemon.documents()] == [ROOT_A, ROOT_C]

    kind, body, headers = function.invoke({"fail": 7}, _header(ROOT_E, PARENT_E, 1))
    assert kind == "error" and body["errorType"] == "ValueError" and body["errorMessage"] == "bad order 7"
    assert "ValueError" in headers["lambda-runtime-function-xray-error-cause"]
    failed = daemon.wait_for(3)[2]
    assert failed["trace_id"] == ROOT_E and failed["fault"] is True
    assert failed["cause"]["exceptions"][0]["type"] == "ValueError"
    assert failed["cause"]["exceptions"][0]["message"] == "bad order 7"

    kind, body, _ = function.invoke({**http_event, "status": 503}, _header(ROOT_A, PARENT_A, 1))
    fault = daemon.wait_for(4)[3]
    assert fault["http"]["response"] == {"status": 503} and fault["fault"] is True
    assert _cold_start_metrics(function) == 1
    assert daemon.errors() == []
    handled = [json.loads(line) for line in function.output().splitlines() if '"handling"' in line]
    assert [(line["cold_start"], line["xray_trace_id"]) for line in handled] == [
        (True, ROOT_A), (False, ROOT_B), (False, ROOT_C), (False, ROOT_E), (False, ROOT_A)
    ]
    assert len({line["function_request_id"] for line in handled}) == 5


def test_documents_are_sent_before_the_result_reaches_the_runtime_api(
    tmp_path: Path, start_function: Callable[..., Function]
) -> None:
    """Lambda may freeze the process as soon as the result is posted: the UDP documents must
    already be in the daemon's socket when ``/response`` or ``/error`` arrives (no reader thread
    here: the socket is drained at that moment, so a late send cannot pass)."""
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.setblocking(False)

    def pending() -> list[str]:
        found = []
        while True:
            try:
                found.append(json.loads(daemon.recv(65535).split(b"\n", 1)[1])["trace_id"])
            except BlockingIOError:
                return found

    function = start_function(
        _task(tmp_path, "app", DECORATED), "app.handler",
        daemon_address=f"127.0.0.1:{daemon.getsockname()[1]}", on_result=pending,
    )
    try:
        ok = function.invoke({}, _header(ROOT_A, PARENT_A, 1))
        failed = function.invoke({"fail": 1}, _header(ROOT_C, PARENT_C, 1))
        late = function.invoke({}, _header(ROOT_E, PARENT_E, 1), time_left=0.1)  # no time to flush OTLP
    finally:
        daemon.close()
    assert (ok[0], failed[0], late[0]) == ("response", "error", "response"), function.output()
    assert list(function.api.seen_at_result.values()) == [[ROOT_A], [ROOT_C], [ROOT_E]]


def test_undecorated_handler_through_the_layer_exec_wrapper(
    tmp_path: Path,
    daemon: UdpReceiver,
    opt_dir: Path,
    var_runtime: Path,
    start_function: Callable[..., Function],
) -> None:
    task = _task(tmp_path, "plain", PLAIN)
    function = start_function(
        task,
        "plain.handler",
        wrapper=opt_dir / "tracekit-instrument",
        python_path=f"{task}:{opt_dir / 'python'}:{var_runtime}",
        python_args=("-S",),  # no site-packages: only what Lambda would have
    )

    kind, body, headers = function.invoke({"fail": True}, _header(ROOT_A, PARENT_A, 1))
    assert kind == "error" and body["errorType"] == "RuntimeError", function.output()
    assert "RuntimeError" in headers["lambda-runtime-function-xray-error-cause"]
    first = daemon.wait_for(1)[0]
    assert first["parent_id"] == PARENT_A and first["name"] == "plain.handler"
    assert first["annotations"] == {"ColdStart": True} and first["fault"] is True
    assert _cold_start_metrics(function) == 1  # emitted although the first invocation failed

    kind, body, _ = function.invoke({}, _header(ROOT_C, PARENT_C, 1))
    assert kind == "response", body
    assert body["tracekit"].startswith(str(opt_dir / "python" / "tracekit"))
    assert body["handler_env"] == "plain.handler"
    assert body["loaded"] == []
    second = daemon.wait_for(2)[1]
    assert second["trace_id"] == ROOT_C and second["annotations"] == {"ColdStart": False}
    assert _cold_start_metrics(function) == 1


@pytest.mark.parametrize("handler", ["plain.nothing", "broken.handler"])
def test_init_errors_behind_the_wrapper_are_those_of_the_runtime_without_it(
    tmp_path: Path, opt_dir: Path, var_runtime: Path, start_function: Callable[..., Function], handler: str
) -> None:
    task = _task(tmp_path, "plain", PLAIN)
    (task / "broken.py").write_text("import no_such_dependency\n")
    python_path = f"{task}:{opt_dir / 'python'}:{var_runtime}"
    posted = []
    for wrapper in (None, opt_dir / "tracekit-instrument"):
        function = start_function(
            task, handler, wrapper=wrapper, python_path=python_path, python_args=("-S",)
        )
        error = function.api.init_errors.get(timeout=20)
        posted.append((error["errorType"], error["errorMessage"]))
        assert function.process.wait(timeout=20) != 0
    assert posted[0][0] in ("Runtime.HandlerNotFound", "Runtime.ImportModuleError")
    assert posted[1] == posted[0]
