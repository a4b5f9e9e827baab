"""OTLP straight to AWS (X-Ray ``/v1/traces``, CloudWatch Logs ``/v1/logs``), SigV4-signed.

The receiver stands in for AWS: it recomputes every request's signature with botocore and answers
403 as AWS does when the signature, the key or the token is wrong; it decodes the protobuf, and the
ids are compared with the X-Ray documents the same run sent to the daemon stand-in.
"""

from __future__ import annotations

import datetime
import io
import itertools
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.credentials import CredentialProvider, RefreshableCredentials
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import tracekit
import tracekit.logs
from support.otlp_receiver import OtlpReceiver
from tracekit._shared import otlp_http
from tracekit._shared import stats as _stats
from tracekit._shared.settings import ConfigError
from tracekit.tracing import config, provider
from tracekit.xray.tree import flatten

KEY, SECRET, TOKEN = "AKIDTRACEKITTEST0001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYTESTKEY", "SESSION-TOKEN-Zx81"
LOGS_HEADERS = "x-aws-log-group=orders,x-aws-log-stream=web-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """The AWS stand-in, accepting KEY/SECRET; the process has those credentials in its environment."""
    for name, value in (("AWS_ACCESS_KEY_ID", KEY), ("AWS_SECRET_ACCESS_KEY", SECRET),
                        ("AWS_SESSION_TOKEN", TOKEN), ("AWS_REGION", "eu-west-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRACEKIT_OTLP_SIGV4", raising=False)
    _stats.reset()
    with OtlpReceiver(grpc_enabled=False, sigv4={KEY: SECRET}) as receiver:
        yield receiver
    provider.shutdown()
    tracekit.logs.configure(otlp=False, stdlib=False)


def _signed_traces(receiver: OtlpReceiver, **options: Any) -> None:
    tracekit.configure(service="orders", exporters=["otlp"], otlp_endpoint=receiver.traces_url,
                       otlp_sigv4="xray", sampler=ALWAYS_ON, **options)


def _logs_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"TRACEKIT_LOGS_EXPORTERS": "stdout,otlp", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": receiver.logs_url,
            "TRACEKIT_OTLP_LOGS_SIGV4": "logs", "OTEL_EXPORTER_OTLP_LOGS_HEADERS": LOGS_HEADERS,
            "AWS_REGION": "eu-west-1"}


def test_spans_and_logs_are_signed_and_keep_the_ids_of_the_xray_documents(
    aws: OtlpReceiver, xray_daemon: Any
) -> None:
    out = io.StringIO()
    tracekit.logs.configure(env=_logs_env(aws), stream=out, stdlib=False)
    tracekit.configure(service="orders", exporters=["xray", "otlp"], otlp_endpoint=aws.traces_url,
                       otlp_sigv4="xray", daemon_udp=("127.0.0.1", xray_daemon.port), sampler=ALWAYS_ON)
    log = tracekit.get_logger("orders.api")
    with tracekit.span("checkout"):
        log.info("order placed", order_id=42)
        with tracekit.span("charge"):
            log.warning("card declined once", attempt=1)
    assert tracekit.force_flush() and tracekit.logs.flush(5)

    spans = aws.wait_for(2)
    records = aws.wait_for_logs(2)
    documents = xray_daemon.wait_for(1)
    nodes = {n["id"]: n for n in flatten(documents)}
    assert {s["span_id"] for s in spans} == set(nodes)
    trace_ids = {d["trace_id"] for d in documents}
    assert {"1-" + s["trace_id"][:8] + "-" + s["trace_id"][8:] for s in spans} == trace_ids
    by_message = {r["body"]: r for r in records}
    span_of = {s["name"]: s for s in spans}
    for message, span in (("order placed", "checkout"), ("card declined once", "charge")):
        record = by_message[message]
        expected = span_of[span]
        assert (record["trace_id"], record["span_id"]) == (expected["trace_id"], expected["span_id"])
        assert record["attributes"]["xray_trace_id"] in trace_ids
    assert by_message["order placed"]["attributes"]["order_id"] == 42
    assert by_message["card declined once"]["severity_text"] == "WARNING"
    assert '"order placed"' in out.getvalue()  # the stdout lines stay

    requests = aws.requests()
    assert {r.sigv4 for r in requests} == {"valid"}
    assert {(r.path, r.service, r.region) for r in requests} == {
        ("/v1/traces", "xray", "eu-west-1"), ("/v1/logs", "logs", "eu-west-1")}
    logs_request = next(r for r in requests if r.path == "/v1/logs")
    assert {"x-aws-log-group", "x-aws-log-stream", "host", "content-type"} <= set(logs_request.signed_headers)
    assert logs_request.headers["x-aws-log-group"] == "orders"
    assert logs_request.headers["x-amz-security-token"] == TOKEN


class _Issuer(CredentialProvider):
    """A botocore credential provider handing out short-lived keys, as the container or IMDS
    provider does; each new key is accepted by the receiver and the previous one revoked."""

    METHOD = "test-short-lived"

    def __init__(self, receiver: OtlpReceiver) -> None:
        super().__init__()
        self.receiver = receiver
        self.numbers = itertools.count(1)
        self.issued: list[str] = []

    def _metadata(self) -> dict[str, str]:
        key = f"ASIATRACEKITTEST{next(self.numbers):04d}"
        for old in self.issued:
            self.receiver.revoke_key(old)
        self.receiver.accept_key(key, SECRET + key)
        self.issued.append(key)
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
        return {"access_key": key, "secret_key": SECRET + key, "token": TOKEN,
                "expiry_time": expiry.isoformat()}

    def load(self) -> RefreshableCredentials:
        return RefreshableCredentials.create_from_metadata(
            self._metadata(), self._metadata, self.METHOD, advisory_timeout=1, mandatory_timeout=0.5
        )


def test_expired_credentials_are_refreshed_before_signing(
    aws: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = botocore.session.Session()
    issuer = _Issuer(aws)
    session.get_component("credential_provider").insert_before("env", issuer)
    monkeypatch.setattr(botocore.session, "get_session", lambda *a, **k: session)
    _signed_traces(aws)
    with tracekit.span("before-expiry"):
        pass
    assert tracekit.force_flush()
    time.sleep(1.2)  # within a second of expiry: botocore refreshes, the old key is revoked
    with tracekit.span("after-refresh"):
        pass
    assert tracekit.force_flush()
    assert [s["name"] for s in aws.wait_for(2)] == ["before-expiry", "after-refresh"]
    requests = aws.requests()
    assert [r.sigv4 for r in requests] == ["valid", "valid"]
    assert [r.access_key for r in requests] == issuer.issued[:2]
    assert not any(k.startswith("errors.") for k in _stats.stats())


@pytest.mark.parametrize(("secret", "reason"), [
    ("not-the-secret", "InvalidSignatureException: The request signature we calculated does not match"),
    (None, "ExpiredTokenException: The security token included in the request is expired"),
])
def test_a_403_is_counted_logged_once_without_secrets_and_not_retried(
    aws: OtlpReceiver, caplog: pytest.LogCaptureFixture, secret: str | None, reason: str
) -> None:
    aws.revoke_key(KEY)
    if secret is not None:
        aws.accept_key(KEY, secret)  # AWS computes another signature
    _signed_traces(aws)
    with caplog.at_level(logging.WARNING):
        for name in ("one", "two", "three"):
            with tracekit.span(name):  # the application sees nothing
                pass
            tracekit.force_flush()
    assert [r.status for r in aws.requests()] == [403, 403, 403]  # not retried: the OTLP spec says so
    counts = _stats.stats()
    assert counts["errors.otlp.forbidden"] == 3
    assert counts["otlp.spans_failed"] == 3
    ours = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    assert len(ours) == 1
    assert f"forbidden: HTTP 403 {reason}" in ours[0]
    logged = caplog.text
    assert TOKEN not in logged and SECRET not in logged and "Canonical String" not in logged


def test_throttling_is_retried_with_backoff_and_counted(aws: OtlpReceiver) -> None:
    aws.fail(429, times=2, retry_after=0.05)
    _signed_traces(aws)
    with tracekit.span("throttled"):
        pass
    assert tracekit.force_flush()
    assert [s["name"] for s in aws.wait_for(1)] == ["throttled"]
    assert [(r.status, r.sigv4) for r in aws.requests()] == [(429, "valid")] * 2 + [(200, "valid")]
    counts = _stats.stats()
    assert counts["errors.otlp.throttled"] == 2
    assert counts["otlp.retries"] == 2
    assert counts["otlp.spans_exported"] == 1


def test_compressed_bodies_are_signed_as_sent(aws: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    _signed_traces(aws)
    with tracekit.span("zipped"):
        pass
    assert tracekit.force_flush()
    assert [s["name"] for s in aws.wait_for(1)] == ["zipped"]
    (request,) = aws.requests()
    assert (request.encoding, request.sigv4) == ("gzip", "valid")
    assert "content-encoding" in request.signed_headers


def test_unsigned_requests_and_an_unreachable_endpoint_are_counted(aws: OtlpReceiver) -> None:
    tracekit.configure(exporters=["otlp"], otlp_endpoint=aws.traces_url, otlp_sigv4="off",
                       sampler=ALWAYS_ON)
    with tracekit.span("unsigned"):
        pass
    tracekit.force_flush()
    assert [(r.status, r.sigv4) for r in aws.requests()] == [(403, "missing")]
    assert _stats.stats()["errors.otlp.forbidden"] == 1
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tracekit.configure(exporters=["otlp"], otlp_endpoint=f"http://127.0.0.1:{port}/v1/traces",
                       otlp_sigv4="xray", sampler=ALWAYS_ON)
    with tracekit.span("nobody-listening"):
        pass
    tracekit.force_flush()
    assert _stats.stats()["errors.otlp.unreachable"] >= 1, _stats.stats()


def test_which_requests_are_signed_for_which_service_and_region() -> None:
    cases = {
        ("https://xray.us-west-2.amazonaws.com/v1/traces", "auto"): "xray",
        ("https://logs.ap-south-1.amazonaws.com/v1/logs", "auto"): "logs",
        ("https://vpce-1.xray.us-west-2.vpce.amazonaws.com/v1/traces", "auto"): "xray",
        ("https://xray.us-west-2.amazonaws.com/v1/traces", "off"): None,
        ("http://127.0.0.1:4318/v1/traces", "auto"): None,
        ("http://collector.internal:4318/v1/logs", "logs"): "logs",
    }
    for (endpoint, mode), service in cases.items():
        assert otlp_http.sigv4_service(endpoint, mode, "xray") == service, (endpoint, mode)
    session = otlp_http.session("https://xray.us-west-2.amazonaws.com/v1/traces", "auto",
                                default_service="xray", region="eu-west-1", name="otlp")
    assert session.signer is not None and session.signer.region == "us-west-2"  # the host's region wins


def test_sigv4_settings_are_checked() -> None:
    assert config.load({"TRACEKIT_OTLP_SIGV4": "XRAY"}).otlp_sigv4 == "xray"
    assert config.load({}).otlp_sigv4 == "auto"
    with pytest.raises(ConfigError, match=r"TRACEKIT_OTLP_SIGV4='sign' is not valid: expected auto or xray"):
        config.load({"TRACEKIT_OTLP_SIGV4": "sign"})
    with pytest.raises(ConfigError, match="HTTP only"):
        config.load({"TRACEKIT_OTLP_SIGV4": "xray", "TRACEKIT_EXPORTERS": "otlp",
                     "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_signing_imports_botocore_but_not_boto3(aws: OtlpReceiver) -> None:
    """The Lambda path: signing needs botocore (the runtime has it), never boto3, and botocore only
    once the first batch is signed."""
    code = (
        "import sys, tracekit\n"
        f"tracekit.configure(exporters=['otlp'], otlp_endpoint='{aws.traces_url}', otlp_sigv4='xray')\n"
        "print('botocore' in sys.modules)\n"
        "with tracekit.span('cold'):\n"
        "    pass\n"
        "tracekit.force_flush()\n"
        "print('botocore' in sys.modules, 'boto3' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_SESSION_TOKEN": TOKEN, "AWS_REGION": "eu-west-1", "OTEL_TRACES_SAMPLER": "always_on"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.split() == ["False", "True", "False"], result.stderr
    assert [(r.status, r.sigv4) for r in aws.wait_for_requests(1)] == [(200, "valid")]
