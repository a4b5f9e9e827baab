"""tracekit.instrument / TRACEKIT_INSTRUMENT: outbound calls become X-Ray subsegments shaped like the
X-Ray SDK's patchers (migration-and-aws-facts.md §1), carry the trace, and never break the call."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
import requests
from botocore.exceptions import ClientError
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import tracekit
from support.xray_schema import validate_document
from tracekit._shared import stats
from tracekit.tracing import aws_calls, config, instrument, propagation, provider


@pytest.fixture
def traced(xray_daemon: Any) -> Iterator[Any]:
    """tracekit sending to a stand-in daemon, every trace sampled; instrumentations undone after."""
    stats.reset()
    yield lambda *names, **kw: tracekit.configure(
        service="orders", exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port),
        sampler=ALWAYS_ON, instrument=list(names), **kw)
    instrument.disable()
    provider.shutdown()


def sent(daemon: Any) -> dict[str, Any]:
    """The one segment sent for the ``handler`` span, validated; its subsegments by order."""
    tracekit.force_flush()
    docs = daemon.wait_for(1)
    assert len(docs) == 1, docs
    validate_document(docs[0])
    return docs[0]


def test_aws_calls_are_named_and_described_as_the_x_ray_sdk_does(traced: Any, xray_daemon: Any,
                                                                  moto: str) -> None:
    ddb = boto3.client("dynamodb", endpoint_url=moto)
    sqs = boto3.client("sqs", endpoint_url=moto)
    ddb.create_table(TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    headers: list[dict[str, Any]] = []
    sqs.meta.events.register("before-send", lambda request, **_: headers.append(dict(request.headers)))
    traced("botocore")
    with tracekit.span("handler"):
        ddb.get_item(TableName="orders", Key={"id": {"S": "1"}}, ConsistentRead=True)
        with pytest.raises(ClientError):
            ddb.get_item(TableName="missing", Key={"id": {"S": "1"}})
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "a", "MessageBody": "1"},
                                                        {"Id": "b", "MessageBody": "2"}])
        sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=5)
    get, missing, batch, receive = sent(xray_daemon)["subsegments"]
    assert (get["name"], get["namespace"], get["http"]) == ("dynamodb", "aws", {"response": {"status": 200}})
    assert {k: v for k, v in get["aws"].items() if k != "request_id"} == {
        "operation": "GetItem", "region": "us-east-1", "table_name": "orders", "consistent_read": True}
    assert get["aws"]["request_id"] and "metadata" not in get and "sql" not in get
    assert missing["http"] == {"response": {"status": 400}}
    assert (missing["error"], missing["fault"], missing["aws"]["table_name"]) == (True, True, "missing")
    assert missing["cause"]["exceptions"][0]["remote"] is True
    assert batch["name"] == "sqs" and batch["aws"]["queue_url"] == queue
    assert (batch["aws"]["message_count"], batch["aws"]["successful_count"]) == (2, 2)
    assert receive["aws"]["message_count"] == 2 and receive["aws"]["max_number_of_messages"] == 5
    # the X-Ray header went out with each call, naming the call's own subsegment as parent
    sent_header = propagation.parse_header(headers[0]["X-Amzn-Trace-Id"].decode())
    assert sent_header is not None and sent_header.sampled is True
    assert f"{sent_header.parent:016x}" == batch["id"]


def test_http_clients_are_remote_subsegments_named_by_host(traced: Any, xray_daemon: Any,
                                                           payments: Any) -> None:
    traced("requests", "httpx", "urllib")
    import urllib.request

    with tracekit.span("handler"):
        requests.get(f"{payments.url}/status/200?token=secret", timeout=5)
        httpx.get(f"{payments.url}/status/404", timeout=5)
        urllib.request.urlopen(f"{payments.url}/status/200", timeout=5).read()
        requests.get(f"{payments.url}/status/429", timeout=5)
        requests.get(f"{payments.url}/status/503", timeout=5)
    ok, not_found, by_urllib, throttled, failed = sent(xray_daemon)["subsegments"]
    for doc in (ok, not_found, by_urllib, throttled, failed):
        assert (doc["name"], doc["namespace"]) == ("127.0.0.1", "remote")
        assert doc["http"]["request"]["method"] == "GET" and set(doc["http"]) == {"request", "response"}
    assert ok["http"]["request"]["url"] == f"{payments.url}/status/200"  # no query string
    assert ok["http"]["response"] == {"status": 200} and not {"error", "fault"} & set(ok)
    assert not_found["error"] is True and "fault" not in not_found
    assert (throttled["error"], throttled["throttle"]) == (True, True)
    assert failed["fault"] is True
    # X-Ray and W3C headers on each call, parent = that call's subsegment
    headers = payments.requests[0]
    assert headers["X-Amzn-Trace-Id"].split(";")[1] == f"Parent={ok['id']}"
    assert headers["traceparent"].split("-")[2] == ok["id"]


def test_sql_block_without_the_query_unless_asked(traced: Any, xray_daemon: Any, tmp_path: Any) -> None:
    for with_query in (False, True):
        traced("sqlite3", sql_query=with_query)
        xray_daemon.clear()
        with tracekit.span("handler"):
            db = sqlite3.connect(str(tmp_path / "orders.db"))
            db.cursor().execute("SELECT 1 WHERE 1 = ?", (1,))
        call = sent(xray_daemon)["subsegments"][0]
        assert call["namespace"] == "remote" and call["sql"]["database_type"] == "sqlite"
        assert call["sql"].get("sanitized_query") == ("SELECT 1 WHERE 1 = ?" if with_query else None)
        assert "SELECT" not in str(call.get("metadata"))
        instrument.disable()
        provider.shutdown()


def test_names_are_checked_and_missing_packages_give_one_line(traced: Any, caplog: Any,
                                                              monkeypatch: Any) -> None:
    with pytest.raises(tracekit.ConfigError, match=r"TRACEKIT_INSTRUMENT='botocore,reqests'.*requests"):
        config.load({"TRACEKIT_INSTRUMENT": "botocore,reqests"})
    with pytest.raises(tracekit.ConfigError, match="botocore, requests, httpx"):
        tracekit.instrument("flask")
    assert config.load({"TRACEKIT_INSTRUMENT": "none"}).instrument == ()
    assert config.load({"TRACEKIT_INSTRUMENT": " Boto3 , requests"}).instrument == ("botocore", "requests")
    monkeypatch.setitem(instrument.INSTRUMENTATIONS, "redis", instrument.Instrumentation(
        "opentelemetry.instrumentation.not_installed", "X", "instrument-sql"))
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        assert tracekit.instrument("redis", "psycopg") == []  # psycopg: the library is not installed
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "redis not traced" in lines[0] and "tracekit-aws[instrument-sql]" in lines[0]
    assert "psycopg not traced" in lines[1] and "\n" not in lines[1]
    assert stats.stats()["instrument.missing"] == 2
    assert tracekit.instrument() == sorted(instrument.enabled())  # all: what is there, silently
    assert "botocore" in instrument.enabled() and "psycopg" not in instrument.enabled()


def test_a_failing_hook_or_header_never_breaks_the_call(traced: Any, xray_daemon: Any, moto: str,
                                                        monkeypatch: Any) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("injected")

    traced("botocore")
    monkeypatch.setattr(aws_calls, "request_fields", broken)
    monkeypatch.setattr(aws_calls, "response_fields", broken)
    monkeypatch.setattr(propagation.XRayPropagator, "inject", broken)
    sqs = boto3.client("sqs", endpoint_url=moto)
    with tracekit.span("handler"):
        assert sqs.list_queues()["ResponseMetadata"]["HTTPStatusCode"] == 200
    call = sent(xray_daemon)["subsegments"][0]
    assert (call["name"], call["aws"]["operation"]) == ("sqs", "ListQueues")
    counts = stats.stats()
    assert counts["errors.instrument.botocore.request"] == counts["errors.instrument.botocore.response"] == 1
    assert counts["errors.instrument.botocore.inject"] == 1


def test_nothing_is_imported_until_asked() -> None:
    code = ("import sys, tracekit; tracekit.configure(exporters='none'); import boto3, requests; "
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.instrumentation', "
            "'aws_xray_sdk'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    code = code.replace("exporters='none'", "exporters='none', instrument='requests'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "opentelemetry.instrumentation.requests" in out.stdout
    assert "botocore" not in out.stdout and "aws_xray_sdk" not in out.stdout


def test_instrument_alone_configures_tracekit_from_the_environment(xray_daemon: Any, payments: Any) -> None:
    code = (f"import tracekit, requests; tracekit.instrument('requests'); "
            f"requests.get('{payments.url}/status/200', timeout=5)")
    env = {**os.environ, "AWS_XRAY_DAEMON_ADDRESS": xray_daemon.address, "OTEL_SERVICE_NAME": "checkout",
           "OTEL_TRACES_SAMPLER": "always_on"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    (doc,) = xray_daemon.wait_for(1)
    validate_document(doc)
    assert doc["name"] == "checkout" and doc["http"]["request"]["url"] == f"{payments.url}/status/200"
    assert payments.requests[0]["X-Amzn-Trace-Id"].startswith(f"Root={doc['trace_id']};Parent={doc['id']}")


def test_s3_sns_and_step_functions_keep_the_x_ray_sdk_names_and_fields(traced: Any, xray_daemon: Any,
                                                                      moto: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto)
    sns = boto3.client("sns", endpoint_url=moto)
    sfn = boto3.client("stepfunctions", endpoint_url=moto)
    s3.create_bucket(Bucket="receipts")
    topic = sns.create_topic(Name="orders")["TopicArn"]
    traced("botocore")
    with tracekit.span("handler"):
        s3.put_object(Bucket="receipts", Key="o-1.json", Body=b"{}")
        s3.copy_object(Bucket="receipts", Key="o-2.json", CopySource="receipts/o-1.json")
        sns.publish(TopicArn=topic, Message="paid")
        sfn.list_state_machines()
    put, copy, publish, machines = sent(xray_daemon)["subsegments"]
    assert (put["name"], put["aws"]["bucket_name"], put["aws"]["key"]) == ("s3", "receipts", "o-1.json")
    assert (copy["aws"]["bucket"], copy["aws"]["copy_source"]) == ("receipts", "receipts/o-1.json")
    assert (publish["name"], publish["aws"]["topic_arn"]) == ("sns", topic)
    assert (machines["name"], machines["aws"]["operation"]) == ("states", "ListStateMachines")


def test_per_operation_fields_follow_the_x_ray_sdk_whitelist() -> None:
    assert aws_calls.snake_case("QueueOwnerAWSAccountId") == "queue_owner_aws_account_id"
    assert aws_calls.request_fields("dynamodb", "BatchGetItem", {"RequestItems": {"a": {}, "b": {}}}) == {
        "table_names": ["a", "b"]}
    assert aws_calls.response_fields("dynamodb", "ListTables", {"TableNames": ["a", "b", "c"]}) == {
        "table_count": 3}
    assert aws_calls.request_fields("sqs", "SendMessage", {
        "QueueUrl": "q", "DelaySeconds": 2, "MessageBody": "secret body",
        "MessageAttributes": {"kind": {}}}) == {"queue_url": "q", "delay_seconds": 2,
                                                 "message_attribute_names": ["kind"]}
    assert aws_calls.response_fields("lambda", "Invoke", {"StatusCode": 200, "FunctionError": "Unhandled",
                                                          "Payload": b"..."}) == {
        "status_code": 200, "function_error": "Unhandled"}
    headers = {"ResponseMetadata": {"HTTPHeaders": {"x-amz-id-2": "a2l"}}}
    assert aws_calls.response_fields("s3", "GetObject", headers) == {"id_2": "a2l"}  # moto sends none
    error = {"Error": {"Code": "Throttling"}, "ResponseMetadata": {"HTTPHeaders": {}}}
    assert aws_calls.response_fields("sqs", "ReceiveMessage", error) == {}  # as the SDK: none on error


def test_an_instrumentation_that_fails_to_install_leaves_the_library_working(
    traced: Any, payments: Any, monkeypatch: Any
) -> None:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    def broken(self: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(RequestsInstrumentor, "_instrument", broken)
    traced()
    assert tracekit.instrument("requests") == []
    assert stats.stats()["errors.instrument.requests"] == 1
    assert requests.get(f"{payments.url}/status/200", timeout=5).status_code == 200
