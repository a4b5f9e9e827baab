"""EMF outputs: stdout (Lambda), a file, and the CloudWatch agent over TCP or UDP.

The agent writer never blocks the caller: lines go to a bounded queue and a daemon thread sends
them, reconnecting with backoff; lines that cannot be delivered are counted, never raised.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from typing import Protocol, TextIO

from tracekit._shared import stats
from tracekit._shared.forking import reset_after_fork
from tracekit._shared.settings import ConfigError, family_of
from tracekit.metrics import emf
from tracekit.metrics.model import Batch

DEFAULT_AGENT = "tcp://127.0.0.1:25888"
MAX_UDP_PAYLOAD = 65_000


class Output(Protocol):
    """Where a flushed batch goes. ``emit`` is called on the flushing thread and must be quick."""

    def emit(self, batch: Batch) -> None: ...

    def flush(self, timeout: float) -> bool: ...

    def close(self, timeout: float) -> None: ...


class LineWriter(Protocol):
    def write(self, lines: list[str]) -> None: ...

    def flush(self, timeout: float) -> bool: ...

    def close(self, timeout: float) -> None: ...


class EmfOutput:
    """Serialises each batch to EMF lines and hands them to a writer."""

    def __init__(self, writer: LineWriter) -> None:
        self.writer = writer

    def emit(self, batch: Batch) -> None:
        self.writer.write(emf.dumps(batch))

    def flush(self, timeout: float) -> bool:
        return self.writer.flush(timeout)

    def close(self, timeout: float) -> None:
        self.writer.close(timeout)


class StreamWriter:
    """Lines to a text stream; ``None`` means whatever ``sys.stdout`` is at write time."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        reset_after_fork(self)

    def forked(self) -> None:
        self._lock = threading.Lock()

    def write(self, lines: list[str]) -> None:
        stream = self._stream or sys.stdout
        text = "".join(line + "\n" for line in lines)
        with self._lock:
            stream.write(text)
            stream.flush()

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        return None


class FileWriter(StreamWriter):
    """Appends lines to a file (for a log agent that tails it)."""

    def __init__(self, path: str) -> None:
        super().__init__(open(path, "a", encoding="utf-8"))  # noqa: SIM115 - closed in close()
        self._file = self._stream

    def close(self, timeout: float) -> None:
        if self._file is not None:
            self._file.close()


class AgentWriter:
    """Newline-delimited JSON to the CloudWatch agent (``tcp://`` or ``udp://host:port``)."""

    def __init__(self, endpoint: str, *, max_lines: int = 10_000, max_backoff: float = 5.0) -> None:
        self.protocol, self.address = parse_endpoint(endpoint)
        self._sock: socket.socket | None = None
        self._max_backoff = max_backoff
        self._backoff = 0.0
        from tracekit._shared.batching import BatchQueue  # not loaded where metrics go to stdout (Lambda)

        self._worker: BatchQueue[str] = BatchQueue(
            self._send, name="metrics.agent", max_items=max_lines, max_batch=500, after_fork=self._forget
        )

    def write(self, lines: list[str]) -> None:
        for line in lines:
            self._worker.submit(line)

    def flush(self, timeout: float) -> bool:
        return self._worker.flush(timeout)

    def close(self, timeout: float) -> None:
        self._worker.close(timeout)
        if self._sock is not None:
            self._sock.close()

    def _send(self, lines: list[str]) -> None:
        for attempt in range(3):
            try:
                self._deliver(lines)
                self._backoff = 0.0
                return
            except OSError as exc:
                self._disconnect()
                if attempt == 2:
                    stats.incr("metrics.agent.dropped.unreachable", len(lines))
                    host, port = self.address
                    stats.report("metrics.agent", exc, f"tracekit: no CloudWatch agent at {self.protocol}://"
                                 f"{host}:{port} ({stats.describe(exc)}); {len(lines)} metric lines dropped")
                    return
                self._backoff = min(max(self._backoff * 2, 0.05), self._max_backoff)
                time.sleep(self._backoff)

    def _deliver(self, lines: list[str]) -> None:
        sock = self._connect()
        if self.protocol == "tcp":
            sock.sendall("".join(line + "\n" for line in lines).encode())
            return
        for line in lines:
            for part in emf.fit(line, MAX_UDP_PAYLOAD - 1):
                data = (part + "\n").encode()
                if len(data) > MAX_UDP_PAYLOAD:
                    stats.incr("metrics.agent.dropped.too_large")
                    continue
                sock.sendto(data, self.address)

    def _connect(self) -> socket.socket:
        if self._sock is None:
            if self.protocol == "tcp":
                self._sock = socket.create_connection(self.address, timeout=5.0)
            else:
                self._sock = socket.socket(family_of(self.address[0]), socket.SOCK_DGRAM)
        return self._sock

    def _forget(self) -> None:
        """After a fork: the parent's connection stays the parent's (closing our copy of the
        descriptor does not end it); the child connects on its own."""
        self._disconnect()
        self._backoff = 0.0

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def parse_endpoint(endpoint: str) -> tuple[str, tuple[str, int]]:
    """``tcp://host:port`` or ``udp://host:port`` -> ``("tcp", (host, port))``."""
    from urllib.parse import urlsplit  # with an agent only: ~2 ms of a Lambda cold start otherwise

    accepted = "tcp://host:port or udp://host:port"
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise ConfigError("AWS_EMF_AGENT_ENDPOINT", endpoint, accepted) from None
    if parts.scheme not in ("tcp", "udp") or not parts.hostname or port is None:
        raise ConfigError("AWS_EMF_AGENT_ENDPOINT", endpoint, accepted)
    return parts.scheme, (parts.hostname, port)

