"""Fixtures for the sidecar: an in-process sidecar on free ports and the scriptable X-Ray stub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sidecar_helpers import BASE, XRayStub

from tracekit._shared import stats as _stats
from tracekit.sidecar.runtime import Sidecar


@pytest.fixture
def stub() -> Iterator[XRayStub]:
    """The X-Ray stub on a free port, keeping every document it accepts."""
    server = XRayStub(keep_documents=True).start()
    yield server
    server.stop()


@pytest.fixture
def make_sidecar() -> Iterator[Callable[..., Sidecar]]:
    """Start sidecars with ``BASE`` settings plus overrides; each is shut down after the test."""
    _stats.reset()
    started: list[Sidecar] = []

    def make(**overrides: Any) -> Sidecar:
        sidecar = Sidecar(replace(BASE, **overrides))
        sidecar.start()
        started.append(sidecar)
        return sidecar

    yield make
    for sidecar in started:
        if not sidecar._stopping:
            sidecar.shutdown()
