"""Pytest fixtures for the receivers, re-exported by ``tests/conftest.py``.

The receiver modules are imported inside the fixtures so that grpc and protobuf load only for the
tests that use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from support.otlp_receiver import OtlpReceiver
    from support.udp_receiver import UdpReceiver


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A running OTLP trace receiver (HTTP and gRPC) on free loopback ports."""
    from support.otlp_receiver import OtlpReceiver

    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def xray_daemon() -> Iterator[UdpReceiver]:
    """A stand-in X-Ray daemon (UDP, daemon protocol) on a free loopback port."""
    from support.udp_receiver import UdpReceiver

    with UdpReceiver() as receiver:
        yield receiver
