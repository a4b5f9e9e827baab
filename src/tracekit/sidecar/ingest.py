"""Settings and assembly of the sidecar's extra receivers: OTLP/HTTP traces and EMF (agent protocol).

The settings below join the sidecar's table (:data:`tracekit.sidecar.settings.OPTIONS`), so each has a
flag, a ``TRACEKIT_SIDECAR_*`` variable and a YAML key like every other sidecar setting.
:func:`listeners` builds the receivers from resolved settings; the sidecar adds them to its own.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO

from tracekit import _stats
from tracekit.sidecar.pipeline import Listener, SegmentSink

Address = tuple[str, int]

OTLP_ADDRESS: Address = ("127.0.0.1", 4318)
"""Where OpenTelemetry SDKs export by default (``OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318``)."""
EMF_ADDRESS: Address = ("127.0.0.1", 25888)
"""The CloudWatch agent's EMF port, which aws-embedded-metrics and Powertools use by default."""
EMF_LOG_GROUP = "/tracekit/emf"

HELP: Mapping[str, tuple[str, str | None]] = {
    "otlp_address": ("OTLP/HTTP trace receiver (POST /v1/traces); 'off' disables it", "HOST:PORT"),
    "otlp_forward": ("send received OTLP on to this URL (SigV4-signed for *.amazonaws.com)", "URL"),
    "otlp_translate": ("turn OTLP spans into X-Ray documents (default: unless --otlp-forward)", None),
    "emf_address": ("EMF endpoint, TCP and UDP (CloudWatch agent protocol); 'off' disables", "HOST:PORT"),
    "emf_log_group": ("CloudWatch Logs group for EMF lines (created if missing)", "NAME"),
    "emf_log_stream": ("log stream for EMF lines (default: the host name)", "NAME"),
    "logs_endpoint_url": ("CloudWatch Logs endpoint instead of logs.REGION", "URL"),
}


class IngestSettings(Protocol):
    """What the receivers read from the sidecar's ``Settings``: the settings in :data:`HELP`, plus
    three of the sidecar's own."""

    @property
    def otlp_address(self) -> Address | None: ...
    @property
    def otlp_forward(self) -> str | None: ...
    @property
    def otlp_translate(self) -> bool | None: ...
    @property
    def emf_address(self) -> Address | None: ...
    @property
    def emf_log_group(self) -> str: ...
    @property
    def emf_log_stream(self) -> str | None: ...
    @property
    def logs_endpoint_url(self) -> str | None: ...
    @property
    def local(self) -> bool: ...
    @property
    def retry_for(self) -> float: ...
    @property
    def shutdown_timeout(self) -> float: ...


def parse_optional_address(text: str) -> Address | None:
    """``host:port``, or ``off`` for a receiver that should not run."""
    from tracekit.sidecar.settings import parse_address

    return None if text.strip().lower() == "off" else parse_address(text)


def attach(sidecar: Any) -> None:
    """Add the receivers that ``sidecar.settings`` asks for to a ``Sidecar`` before it starts."""
    sender = sidecar.sender
    region = sender.http.region if sender is not None else sidecar.settings.region
    for listener in listeners(sidecar.settings, sidecar.sink, region):
        sidecar.add(listener)


def listeners(settings: IngestSettings, sink: SegmentSink, region: str | None) -> list[Listener]:
    """The OTLP and EMF receivers that ``settings`` asks for, feeding ``sink`` and CloudWatch Logs.

    A receiver whose port is taken is left out with a warning (counted as ``errors.sidecar.<name>.
    bind``): the X-Ray daemon ports, the sidecar's main job, must not fail because of them.
    """
    found: list[Listener] = []
    share = settings.shutdown_timeout / 3  # the sidecar then closes the shared sink with the rest
    wanted: tuple[tuple[str, Address | None, Callable[[Address], Listener]], ...] = (
        ("otlp", settings.otlp_address, lambda a: _otlp(settings, a, sink, region, share)),
        ("emf", settings.emf_address, lambda a: _emf(settings, a, region, share)),
    )
    for name, address, build in wanted:
        if address is None:
            continue
        try:
            found.append(build(address))
        except OSError as exc:
            where = f"{address[0]}:{address[1]}"
            _stats.report(f"sidecar.{name}.bind", exc, f"tracekit sidecar: {name} receiver not started, "
                          f"cannot listen on {where}: {exc}")  # fmt: skip
    return found


def _otlp(
    settings: IngestSettings, address: Address, sink: SegmentSink, region: str | None, share: float
) -> Listener:
    from tracekit.sidecar.otlp_forward import OtlpForwarder
    from tracekit.sidecar.otlp_receiver import OtlpHttpReceiver

    url = settings.otlp_forward
    forwarder = OtlpForwarder(url, region=region, retry_for=settings.retry_for) if url else None
    translate = settings.otlp_translate
    if translate is None:
        translate = forwarder is None
    return OtlpHttpReceiver(
        address[0], address[1], sink=sink if translate else None, forwarder=forwarder,
        shutdown_timeout=share,
    )  # fmt: skip


def _emf(settings: IngestSettings, address: Address, region: str | None, share: float) -> Listener:
    from tracekit.sidecar.emf_receiver import EmfReceiver, LineShipper

    shipper: LineShipper
    if settings.local:
        import sys

        shipper = StreamLines(sys.stdout)
    else:
        from tracekit.cwlogs import LogsShipper

        stream = settings.emf_log_stream or socket.gethostname()
        shipper = LogsShipper(
            settings.emf_log_group, stream, region=region, endpoint_url=settings.logs_endpoint_url,
            emf=True,
        )  # fmt: skip
    return EmfReceiver(address[0], address[1], shipper=shipper, shutdown_timeout=share)


class StreamLines:
    """Local mode has no CloudWatch: valid EMF lines are printed (to stdout), one per line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def put(self, message: str, timestamp_ms: int | None = None) -> bool:
        with self._lock:  # one connection thread per client: keep lines whole
            self._stream.write(message + "\n")
        return True

    def close(self, timeout: float) -> None:
        self._stream.flush()
