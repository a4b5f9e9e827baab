"""Assembly of the sidecar's extra receivers: OTLP/HTTP traces and EMF (agent protocol).

Their settings are in the sidecar's table (:data:`tracekit.sidecar.settings.OPTIONS`) like every
other; :func:`listeners` builds the receivers from them, and the sidecar adds them to its own.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from tracekit._shared import stats
from tracekit.sidecar.pipeline import Listener
from tracekit.xray.transports import SegmentSink

if TYPE_CHECKING:
    from tracekit.sidecar.store import EmfStore

Address = tuple[str, int]
EMF_STATS = "sidecar.emf"

class IngestSettings(Protocol):
    """What the receivers read from the sidecar's ``Settings``."""

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
    def memory_limit(self) -> int: ...
    @property
    def shutdown_timeout(self) -> float: ...


def attach(sidecar: Any) -> None:
    """Add the receivers that ``sidecar.settings`` asks for to a ``Sidecar`` before it starts.

    In local mode the EMF lines are kept in the sidecar's store too, for the viewer.
    """
    from tracekit.sidecar.settings import buffers
    from tracekit.sidecar.store import EmfStore

    sender = sidecar.sender
    settings = sidecar.settings
    region = sender.http.region if sender is not None else settings.region
    emf_store = None
    if settings.local and settings.emf_address is not None:
        emf_store = EmfStore(sidecar.db_path, settings.local_retention, buffers(settings).emf)
    for listener in listeners(settings, sidecar.sink, region, emf_store):
        sidecar.add(listener)


def listeners(
    settings: IngestSettings, sink: SegmentSink, region: str | None, emf_store: EmfStore | None = None
) -> list[Listener]:
    """The OTLP and EMF receivers that ``settings`` asks for, feeding ``sink`` and CloudWatch Logs
    (in local mode: stdout and ``emf_store``).

    A receiver whose port is taken is left out with a warning (counted as ``errors.sidecar.<name>.
    bind``): the X-Ray daemon ports, the sidecar's main job, must not fail because of them.
    """
    found: list[Listener] = []
    share = settings.shutdown_timeout / 3  # the sidecar then closes the shared sink with the rest
    wanted: tuple[tuple[str, Address | None, Callable[[Address], Listener]], ...] = (
        ("otlp", settings.otlp_address, lambda a: _otlp(settings, a, sink, region, share)),
        ("emf", settings.emf_address, lambda a: _emf(settings, a, region, share, emf_store)),
    )
    for name, address, build in wanted:
        if address is None:
            continue
        try:
            found.append(build(address))
        except OSError as exc:
            where = f"{address[0]}:{address[1]}"
            stats.report(f"sidecar.{name}.bind", exc, f"tracekit sidecar: {name} receiver not started, "
                          f"cannot listen on {where}: {exc}")  # fmt: skip
    return found


def _otlp(
    settings: IngestSettings, address: Address, sink: SegmentSink, region: str | None, share: float
) -> Listener:
    from tracekit.sidecar.otlp_forward import OtlpForwarder
    from tracekit.sidecar.otlp_receiver import OtlpHttpReceiver
    from tracekit.sidecar.settings import buffers

    url = settings.otlp_forward
    forwarder = None
    if url:
        limit = buffers(settings).otlp_forward
        forwarder = OtlpForwarder(url, region=region, retry_for=settings.retry_for, max_bytes=limit)
    translate = settings.otlp_translate
    if translate is None:
        translate = forwarder is None
    return OtlpHttpReceiver(
        address[0], address[1], sink=sink if translate else None, forwarder=forwarder,
        shutdown_timeout=share,
    )  # fmt: skip


def _emf(
    settings: IngestSettings, address: Address, region: str | None, share: float,
    emf_store: EmfStore | None,
) -> Listener:
    from tracekit.sidecar.emf_receiver import EmfReceiver, LineShipper
    from tracekit.sidecar.settings import buffers

    shipper: LineShipper
    if settings.local:
        import sys

        shipper = StreamLines(sys.stdout, emf_store)
    else:
        from tracekit.logs.cwlogs import LogsShipper

        stream = settings.emf_log_stream or socket.gethostname()
        shipper = LogsShipper(
            settings.emf_log_group, stream, region=region, endpoint_url=settings.logs_endpoint_url,
            emf=True, retry_for=settings.retry_for, stats_prefix=f"{EMF_STATS}.upstream",
            max_buffer_bytes=buffers(settings).emf,
        )  # fmt: skip
    return EmfReceiver(address[0], address[1], shipper=shipper, shutdown_timeout=share)


class StreamLines:
    """Local mode has no CloudWatch: valid EMF lines are printed (to stdout), one per line, and
    kept in ``store`` (when given) for the viewer."""

    def __init__(self, stream: TextIO, store: EmfStore | None = None) -> None:
        self._stream = stream
        self._store = store
        self._lock = threading.Lock()

    def put(self, message: str, timestamp_ms: int | None = None) -> bool:
        with self._lock:  # one connection thread per client: keep lines whole
            self._stream.write(message + "\n")
        return self._store.submit(message) if self._store is not None else True

    @property
    def buffered_bytes(self) -> int:
        return self._store.buffered_bytes if self._store is not None else 0

    def close(self, timeout: float) -> None:
        self._stream.flush()
        if self._store is not None:
            self._store.close(timeout)
