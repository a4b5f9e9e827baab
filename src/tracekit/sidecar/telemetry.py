"""``PutTelemetryRecords`` on a timer, as the daemon does; each call also proves X-Ray is reachable."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping

from tracekit._shared import stats
from tracekit._shared.sigv4 import SignedHTTP

PATH = "/TelemetryRecords"
PREFIX = "sidecar.upstream."
FIELDS = {
    "SegmentsReceivedCount": ("sidecar.udp.received",),
    "SegmentsSentCount": (PREFIX + "sent",),
    "SegmentsSpilloverCount": (PREFIX + "dropped.buffer_full",),
    "SegmentsRejectedCount": ("sidecar.udp.rejected.",),
}
ERRORS = {  # calls, not documents: the daemon counts failed requests here
    "ConnectionRefusedCount": (PREFIX + "retries.connection",),
    "HTTPCode5XXCount": (PREFIX + "retries.server_error",),
    "HTTPCode4XXCount": (PREFIX + "retries.throttled", "errors." + PREFIX + "rejected"),
    "TimeoutCount": (),
    "UnknownHostCount": (),
    "OtherCount": (),
}


class TelemetryReporter:
    """A thread that reports counter deltas every ``interval`` seconds, the first one at start."""

    name = "telemetry"

    def __init__(self, http: SignedHTTP, interval: float) -> None:
        self._http = http
        self._interval = interval
        self._stop = threading.Event()
        self._last: dict[str, int] = {}
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._thread = threading.Thread(
            target=self._run, name="tracekit-sidecar-telemetry", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def report(self) -> bool:
        """Send one record with the counts since the previous successful report."""
        now = stats.stats()
        record: dict[str, object] = {"Timestamp": time.time()}
        record.update({k: self._delta(now, keys) for k, keys in FIELDS.items()})
        record["BackendConnectionErrors"] = {k: self._delta(now, keys) for k, keys in ERRORS.items()}
        body = json.dumps({"TelemetryRecords": [record], "Hostname": socket.gethostname()})
        try:
            resp = self._http.post(PATH, body.encode())
        except Exception as exc:  # unreachable, no credentials: health shows it
            self.last_error = f"{type(exc).__name__}: {exc}"
        else:
            if resp.status < 500 and resp.status != 429:
                return self._sent(now)
            self.last_error = f"HTTP {resp.status} {resp.error_type}"
        stats.report("sidecar.telemetry", msg=f"PutTelemetryRecords failed: {self.last_error}")
        return False

    def _sent(self, now: dict[str, int]) -> bool:
        self.last_error = None
        self.last_success = time.monotonic()
        self._last = now
        stats.incr("sidecar.telemetry.sent")
        return True

    def _delta(self, now: Mapping[str, int], keys: tuple[str, ...]) -> int:
        total = 0
        for key in keys:
            if key.endswith("."):
                total += sum(v - self._last.get(k, 0) for k, v in now.items() if k.startswith(key))
            else:
                total += now.get(key, 0) - self._last.get(key, 0)
        return total

    def _run(self) -> None:
        while True:
            self.report()
            if self._stop.wait(self._interval):
                return
