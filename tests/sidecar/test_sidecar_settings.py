"""Settings precedence (flag > env > YAML > default) and the region from ECS task metadata."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread

import pytest
from sidecar_helpers import HEADER, XRayStub, document, get, wait_until

from tracekit._shared.settings import ConfigError
from tracekit.sidecar.runtime import Sidecar
from tracekit.sidecar.settings import Settings, add_arguments, ecs_region, resolve


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_flag_beats_env_beats_yaml_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("memory_limit: 8\nworkers: 3\nbatch_timeout: 0.5\nlocal: true\n")
    env = {"TRACEKIT_SIDECAR_WORKERS": "6", "TRACEKIT_SIDECAR_BATCH_TIMEOUT": "0.25"}
    s = resolve(parse("--config", str(config), "--batch-timeout", "2"), env)
    assert (s.memory_limit, s.workers, s.batch_timeout, s.local) == (8, 6, 2.0, True)
    assert s.udp_address == Settings().udp_address == ("127.0.0.1", 2000)
    assert s.admin_address == ("127.0.0.1", 2020)
    assert resolve(parse("--config", str(config), "--no-local"), env).local is False
    assert resolve(parse("--local"), {"TRACEKIT_SIDECAR_LOCAL": "false"}).local is True


def test_region_comes_from_aws_region_when_not_given() -> None:
    assert resolve(parse(), {"AWS_REGION": "eu-west-1"}).region == "eu-west-1"
    assert resolve(parse("--region", "us-west-2"), {"AWS_REGION": "eu-west-1"}).region == "us-west-2"


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [(("--workers", "0"),  {}, "--workers"),
     ((), {"TRACEKIT_SIDECAR_ENDPOINT_URL": "xray.local"}, "TRACEKIT_SIDECAR_ENDPOINT_URL"),
     (("--admin-address", "localhost:99999"), {}, "--admin-address"),
     (("--log-level", "loud"), {}, "--log-level"),
     (("--telemetry-interval", "200"), {}, "--health-window")],
)
def test_bad_values_name_their_source(argv: tuple[str, ...], env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve(parse(*argv), env)
    assert err.value.name == named and "expected" in str(err.value)


@pytest.fixture
def metadata() -> Iterator[str]:
    """An ECS task metadata v4 endpoint answering ``/task``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"TaskARN": "arn:aws:ecs:ap-south-1:123456789012:task/c/abc"}).encode()
            self.send_response(200 if self.path == "/v4/xyz/task" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v4/xyz"
    server.shutdown()
    server.server_close()


def test_region_from_ecs_task_metadata(metadata: str) -> None:
    assert ecs_region({"ECS_CONTAINER_METADATA_URI_V4": metadata}) == "ap-south-1"
    assert ecs_region({"ECS_CONTAINER_METADATA_URI_V4": metadata + "/missing"}) is None
    assert ecs_region({}) is None


def test_sidecar_without_a_region_takes_the_task_metadata_one(
    metadata: str, make_sidecar: Callable[..., Sidecar], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", metadata)
    sidecar = make_sidecar(region=None, endpoint_url="http://127.0.0.1:9")
    assert sidecar.describe()["region"] == "ap-south-1"
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ConfigError, match="AWS_REGION or ECS task metadata"):
        make_sidecar(region=None)


def test_ipv6_loopback_addresses(make_sidecar: Callable[..., Sidecar], stub: XRayStub) -> None:
    """``--udp-address [::1]:2000`` (and the TCP and admin ports) bind IPv6."""
    v6 = ("::1", 0)
    sidecar = make_sidecar(endpoint_url=stub.url, udp_address=v6, tcp_address=v6, admin_address=v6)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.sendto(HEADER + b"\n" + document(6), sidecar.udp.address())
    wait_until(lambda: stub.ids)
    host, port = sidecar.admin.address()
    assert get(f"http://[{host}]:{port}/health")[0] == 200
    sidecar.shutdown()  # the stop wakes the IPv6 reader
    assert not sidecar.udp.alive()
