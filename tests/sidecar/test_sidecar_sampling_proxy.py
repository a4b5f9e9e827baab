"""The TCP port: the real X-Ray SDK's centralized-sampling client through it, and its limits."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sidecar_helpers import XRayStub, post, url, wait_until

from tracekit import _stats
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


def test_proxy_signs_with_its_own_credentials(
    make_sidecar: Callable[..., Sidecar], stub: XRayStub
) -> None:
    sidecar = make_sidecar(endpoint_url=stub.url)
    status, _ = post(url(sidecar.proxy.address(), "/GetSamplingRules"), b"{}")
    assert status == 404  # the stub has no sampling API; what matters is what reached it
    auth = stub.headers["/GetSamplingRules"]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/us-east-1/xray/aws4_request" in auth


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
    idle = [socket.create_connection(sidecar.proxy.address()) for _ in range(33)]
    try:
        wait_until(lambda: _stats.stats().get("sidecar.proxy.dropped.too_many_connections") == 1)
    finally:
        for conn in idle:
            conn.close()
    wait_until(lambda: post(url(sidecar.proxy.address(), "/TraceSegments"))[0] == 403)
