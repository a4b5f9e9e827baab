"""Fixtures for the Lambda tests: a Runtime API server, the real awslambdaric, a built layer."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lambda_runtime_api import Function, RuntimeApi

from support.udp_receiver import UdpReceiver

SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))
RUNTIME_MODULES = ("awslambdaric", "simplejson", "snapshot_restore_py.py", "runtime_client.cpython-*.so")
"""What the Lambda Python runtime itself provides in /var/runtime (awslambdaric and its imports)."""


@pytest.fixture(scope="session")
def layer_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tracekit.aws_lambda import layer

    return layer.build("3.11", "x86_64", tmp_path_factory.mktemp("layer") / "tracekit-layer.zip").path


@pytest.fixture(scope="session")
def opt_dir(layer_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer unpacked as Lambda does under /opt (file modes from the zip)."""
    opt = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(layer_zip) as archive:
        for info in archive.infolist():
            path = Path(archive.extract(info, opt))
            path.chmod((info.external_attr >> 16) & 0o777)
    return opt


@pytest.fixture(scope="session")
def var_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the runtime client, as in Lambda's /var/runtime: no tracekit, no OTel, no boto3."""
    runtime = tmp_path_factory.mktemp("var-runtime")
    for pattern in RUNTIME_MODULES:
        for source in SITE.glob(pattern):
            (runtime / source.name).symlink_to(source)
    return runtime


@pytest.fixture
def daemon() -> Iterator[UdpReceiver]:
    with UdpReceiver() as receiver:
        yield receiver


@pytest.fixture
def start_function(tmp_path: Path, daemon: UdpReceiver) -> Iterator[Callable[..., Function]]:
    """Start ``python -m awslambdaric HANDLER`` (optionally through an exec wrapper) in ``task``."""
    started: list[Function] = []

    def start(task: Path, handler: str, *, wrapper: Path | None = None, python_path: str = "",
              python_args: tuple[str, ...] = (), daemon_address: str | None = None,
              on_result: Callable[[], Any] | None = None) -> Function:
        api = RuntimeApi(on_result)
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": python_path,
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "fn",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_REGION": "us-east-1",
            "AWS_XRAY_DAEMON_ADDRESS": daemon_address or daemon.address,
            "AWS_EMF_NAMESPACE": "tracekit-tests",
            "LAMBDA_TASK_ROOT": str(task),
            "_HANDLER": handler,
        }
        command = [sys.executable, *python_args, "-m", "awslambdaric", handler]
        if wrapper is not None:
            env["AWS_LAMBDA_EXEC_WRAPPER"] = str(wrapper)
            command.insert(0, str(wrapper))
        stdout = tmp_path / f"stdout-{len(started)}.txt"
        with stdout.open("wb") as sink:
            process = subprocess.Popen(command, cwd=task, env=env, stdout=sink, stderr=subprocess.STDOUT)
        function = Function(api, process, stdout)
        started.append(function)
        return function

    yield start
    for function in started:
        function.process.kill()
        function.process.wait(timeout=10)
        function.api.shutdown()
        function.api.server_close()
