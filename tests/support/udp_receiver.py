"""A stand-in X-Ray daemon for tests: a UDP listener that speaks the daemon protocol.

Each datagram is framed and checked with ``tracekit.xray.protocol.decode`` (the same code the
sidecar uses), so a sender that gets the framing wrong shows up in :meth:`UdpReceiver.errors`.

    with UdpReceiver() as daemon:
        os.environ["AWS_XRAY_DAEMON_ADDRESS"] = daemon.address
        ...
        segment = daemon.wait_for(1)[0]
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from tracekit.xray import protocol

_RCVBUF = 4 * 1024 * 1024
"""A large kernel buffer, so bursts in load tests are not lost before the thread reads them."""


class UdpReceiver:
    """Receive daemon datagrams on 127.0.0.1 (free port) in a background thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._documents: list[dict[str, Any]] = []
        self._datagrams: list[bytes] = []
        self._errors: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self._sock.bind(("127.0.0.1", 0))
        self._thread: threading.Thread | None = None
        self._running = False

    def start(self) -> UdpReceiver:
        self._running = True
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, name="udp-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading and close the socket (then the port is closed: ICMP unreachable)."""
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> UdpReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the ``AWS_XRAY_DAEMON_ADDRESS`` form."""
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def documents(self) -> list[dict[str, Any]]:
        """Segment documents received so far (parsed JSON), in arrival order."""
        with self._cond:
            return list(self._documents)

    def datagrams(self) -> list[bytes]:
        """Every datagram as received, valid or not (to check sizes and framing)."""
        with self._cond:
            return list(self._datagrams)

    def errors(self) -> list[tuple[str, str]]:
        """``(reason, detail)`` for each rejected datagram: a protocol error or ``invalid_json``."""
        with self._cond:
            return list(self._errors)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``n`` documents arrived; return them all, or fail saying what came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._documents) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [d.get("name") for d in self._documents]
                    raise AssertionError(
                        f"UDP receiver: expected {n} documents within {timeout}s; got {names}, "
                        f"rejected {self._errors}"
                    )
                self._cond.wait(left)
            return list(self._documents)

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._cond:
            self._documents.clear()
            self._datagrams.clear()
            self._errors.clear()

    def _serve(self) -> None:
        while self._running:
            try:
                datagram = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self._record(datagram)

    def _record(self, datagram: bytes) -> None:
        document: dict[str, Any] | None = None
        error: tuple[str, str] | None = None
        try:
            parsed = json.loads(protocol.decode(datagram))
        except protocol.ProtocolError as exc:
            error = (exc.reason, str(exc))
        except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested JSON
            error = ("invalid_json", str(exc))
        else:
            if isinstance(parsed, dict):
                document = parsed
            else:
                error = ("not_an_object", f"document is a JSON {type(parsed).__name__}")
        with self._cond:
            self._datagrams.append(datagram)
            if document is not None:
                self._documents.append(document)
            if error is not None:
                self._errors.append(error)
            self._cond.notify_all()
