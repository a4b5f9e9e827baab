"""The TCP port: the real X-Ray SDK's centralized-sampling client through it, and its limits."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sidecar_helpers import HEADER, XRayStub, document, post, send_udp, sigv4_verifies, url, wait_until

from tracekit._shared import stats as _stats
from tracekit.sampling.controlplane import ControlPlane
from tracekit.sidecar.proxy import MAX_BODY
from tracekit.sidecar.runtime import Sidecar

SAMPLING = Path(__file__).resolve().parents[2] / "sampling"


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    """The local X-Ray sampling control plane over HTTP, seeded with ``sampling/``."""
    server = ControlPlane().start()
    server.load_dir(SAMPLING)
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["xray", "local"])
def test_xray_sdk_centralized_sampler_through_the_tcp_port(
    make_sidecar: Callable[..., Sidecar], plane: ControlPlane, tmp_path: Path, mode: str
) -> None:
    from aws_xray_sdk.core.sampling.connector import ServiceConnector

    if mode == "xray":  # proxied, SigV4-signed, to an X-Ray-compatible endpoint
        sidecar = make_sidecar(endpoint_url=plane.url)
    else:  # served by the embedded control plane
        sidecar = make_sidecar(local=True, local_db=tmp_path / "t.db", sampling_dir=SAMPLING)
    host, port = sidecar.proxy.address()
    connector = ServiceConnector()
    connector.setup_xray_client(host, port, None)
    rules = connector.fetch_sampling_rules()
    names = {rule.name for rule in rules}
    assert {"Default", "High-priority transactions", "API calls"} <= names
    targets, last_modified = connector.fetch_sampling_target(rules)
    assert set(targets) <= names and last_modified > 0


def test_local_mode_without_rules_keeps_every_trace(
    make_sidecar: Callable[..., Sidecar], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from aws_xray_sdk.core.sampling.connector import ServiceConnector

    missing = tmp_path / "sampling"
    with caplog.at_level("INFO", logger="tracekit.sidecar"):
        sidecar = make_sidecar(local=True, local_db=tmp_path / "t.db", sampling_dir=missing)
    said = [r.getMessage() for r in caplog.records if str(missing) in r.getMessage()]
    assert said == [f"no {missing}: local sampling keeps every trace (--sampling-dir DIR applies rules)"]
    connector = ServiceConnector()
    connector.setup_xray_client(*sidecar.proxy.address(), None)
    [rule] = connector.fetch_sampling_rules()
    assert (rule.name, rule.rate) == ("Default", 1.0)


def test_proxy_signs_with_its_own_credentials(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    status, _ = post(url(sidecar.proxy.address(), "/GetSamplingRules"), b"{}")
    assert status == 404  # the stub has no sampling API; what matters is what reached it
    auth = stub.headers["/GetSamplingRules"]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/us-east-1/xray/aws4_request" in auth


def test_forwarded_and_sent_requests_carry_signatures_that_verify(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    """X-Ray would accept them: botocore recomputes the same signature from the received request."""
    sidecar = make_sidecar(endpoint_url=stub.url)
    body = json.dumps({"SamplingStatisticsDocuments": [], "ClientID": "0" * 24}).encode()
    post(url(sidecar.proxy.address(), "/SamplingTargets"), body)
    send_udp(sidecar.udp.address(), HEADER + b"\n" + document(1))
    wait_until(lambda: stub.ids)
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert stub.bodies["/SamplingTargets"] == body
    for path in ("/SamplingTargets", "/TraceSegments"):
        headers, received = stub.headers[path], stub.bodies[path]
        assert "/us-east-1/xray/aws4_request" in headers["Authorization"]
        assert sigv4_verifies(stub.url + path, headers, received, secret), path
        assert not sigv4_verifies(stub.url + path, headers, received + b" ", secret)
        assert not sigv4_verifies(stub.url + path, headers, received, secret + "x")


def test_chunked_and_stalled_requests_do_not_hold_a_connection(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    assert 0 < sidecar.proxy._server.read_timeout <= 60  # the stalled connection below lasts that long
    sidecar.proxy._server.read_timeout = 0.3
    with socket.create_connection(sidecar.proxy.address(), timeout=5) as chunked:
        # One write: the sidecar answers without reading the body, and may close before a second.
        chunked.sendall(b"POST /SamplingTargets HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                        b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        answer = b"".join(iter(lambda: chunked.recv(4096), b""))
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"411" and b"Content-Length" in answer
    assert "/SamplingTargets" not in stub.headers
    stalled = socket.create_connection(sidecar.proxy.address())
    stalled.sendall(b"POST /SamplingTargets HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")
    stalled.settimeout(5)
    assert stalled.recv(100) == b""  # closed by the sidecar after its read timeout
    stalled.close()


@pytest.mark.parametrize(
    "path", ["/TraceSegments", "/CreateSamplingRule", "/DeleteSamplingRule", "/", "/../GetSamplingRules"]
)
def test_other_paths_are_forbidden(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub, path: str
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    status, body = post(url(sidecar.proxy.address(), path), b"{}")
    assert status == 403 and body["__type"] == "AccessDeniedException"
    assert "/GetSamplingRules" in body["message"]
    assert set(stub.headers) <= {"/TelemetryRecords"}  # nothing was forwarded


def test_oversized_requests_are_refused(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    status, body = post(url(sidecar.proxy.address(), "/SamplingTargets"), b"x" * (MAX_BODY + 1))
    assert status == 413 and str(MAX_BODY) in body["message"]
    assert set(stub.headers) <= {"/TelemetryRecords"}


def test_upstream_down_is_a_502_not_a_crash(make_sidecar: Callable[..., Sidecar]) -> None:
    sidecar = make_sidecar(endpoint_url="http://127.0.0.1:9")
    status, body = post(url(sidecar.proxy.address(), "/SamplingTargets"), json.dumps({}).encode())
    assert status == 502 and body["__type"] == "BadGateway"


def test_connections_over_the_cap_are_closed_and_counted(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    idle = [socket.create_connection(sidecar.proxy.address()) for _ in range(32)]
    for conn in idle:  # past their headers: busy, not evictable like a slow client's
        conn.sendall(b"POST /SamplingTargets HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")
    wait_until(lambda: not sidecar.proxy._server._waiting and sidecar.proxy._server._slots._value == 0)
    idle.append(socket.create_connection(sidecar.proxy.address()))
    try:
        wait_until(lambda: _stats.stats().get("sidecar.proxy.rejected.too_many_connections") == 1)
    finally:
        for conn in idle:
            conn.close()
    wait_until(lambda: _status(url(sidecar.proxy.address(), "/TraceSegments")) == 403)


def _status(address: str) -> int:
    """The status of a POST, 0 while the slots of the closed connections are not free yet."""
    try:
        return post(address)[0]
    except OSError:
        return 0
