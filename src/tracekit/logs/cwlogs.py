"""Ship lines to CloudWatch Logs with PutLogEvents, within every limit of that API.

``put`` never blocks and never raises: lines go to a byte-bounded buffer (full -> ``False``,
counted) that a daemon thread drains. Batches hold <= 10,000 events and <= 1,048,576 bytes (message
bytes + 26 per event), sorted by time, spanning <= 24 h; an event over 1 MB is truncated (counted);
events outside the accepted window (14 days back, 2 h ahead) are dropped (counted) instead of
failing the batch. Missing groups and streams are created. Throttling, 5xx and connection failures
are retried for ``retry_for`` seconds (the shared :meth:`BatchQueue.retry`, as X-Ray documents are)
while the lines stay in the bounded buffer. Every line ends sent or counted under
``<stats_prefix>.dropped.<reason>``: ``buffer_full``, ``out_of_window``, ``rejected`` (refused by
CloudWatch), ``retries_exhausted``, ``shutdown``/``unconfirmed_at_exit`` (unsent at close).
With ``emf=True`` each call carries ``x-amzn-logs-format: json/emf`` so CloudWatch extracts metrics.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any, NamedTuple

from tracekit._shared import aws, stats
from tracekit._shared.batching import BatchQueue

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 1_048_576
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000
MAX_AGE_MS = 14 * 24 * 3600 * 1000
MAX_AHEAD_MS = 2 * 3600 * 1000
EMF_HEADER = ("x-amzn-logs-format", "json/emf")
EVENT_MEMORY = 100
"""Bytes an event holds in memory beyond its message (tuple, str header, queue slot), counted
against ``max_buffer_bytes`` so that the limit bounds memory, not just message bytes."""


class Event(NamedTuple):
    timestamp_ms: int
    message: str
    size: int
    """UTF-8 bytes of the message plus the 26 bytes CloudWatch counts per event."""


class LogsShipper:
    """A background PutLogEvents sender for one log group and stream."""

    def __init__(
        self,
        log_group: str,
        log_stream: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        emf: bool = False,
        max_buffer_bytes: int = 16 * 1024 * 1024,
        linger: float = 1.0,
        retry_for: float = 60.0,
        max_attempts: int = 1,
        client: Any = None,
        stats_prefix: str = "cwlogs",
    ) -> None:
        """``max_attempts`` is botocore's (1: the shipper retries, within ``retry_for``)."""
        self.log_group, self.log_stream, self.emf = log_group, log_stream, emf
        self._region, self._endpoint_url, self._max_attempts = region, endpoint_url, max_attempts
        self._client, self._own_client = client, client is None
        self._hooked = False
        self._retry_for = retry_for
        self._prefix = stats_prefix
        self._worker: BatchQueue[Event] = BatchQueue(
            self._send,
            name=stats_prefix,
            max_bytes=max_buffer_bytes,
            max_batch=MAX_BATCH_EVENTS,
            size=lambda event: event.size + EVENT_MEMORY,
            max_batch_bytes=MAX_BATCH_BYTES + EVENT_MEMORY,  # the largest event fits; _send cuts calls
            delivery_copies=2.0,  # the request botocore serialises, then its encoded body
            max_wait=linger,
            after_fork=self._forked,
        )

    def _forked(self) -> None:
        """After a fork a client made here shares the parent's connection pool: make a new one."""
        if self._own_client:
            self._client, self._hooked = None, False

    def put(self, message: str, timestamp_ms: int | None = None) -> bool:
        """Queue a line; False when the buffer is full (counted: ``<prefix>.dropped.buffer_full``)."""
        try:
            return self._worker.submit(make_event(message, timestamp_ms, self._prefix))
        except Exception as exc:
            stats.report(f"{self._prefix}.put", exc)
            return False

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for everything queued so far to be sent (or dropped)."""
        return self._worker.flush(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        return self._worker.close(timeout)

    @property
    def buffered_bytes(self) -> int:
        return self._worker.buffered_bytes

    def _send(self, events: list[Event]) -> None:
        kept = _in_window(events, int(time.time() * 1000))
        self._count("dropped.out_of_window", len(events) - len(kept))
        for batch in batches(kept):
            reason = self._worker.retry(
                functools.partial(self._put_batch, batch),
                retry_for=self._retry_for,
                on_retry=lambda why: self._count(f"retries.{why}"),
            )
            if reason is not None:
                self._count(f"dropped.{reason}", len(batch))

    def _put_batch(self, batch: list[Event]) -> tuple[bool, str] | None:
        """One PutLogEvents call: None when answered, else (worth retrying?, reason)."""
        request = {
            "logGroupName": self.log_group,
            "logStreamName": self.log_stream,
            "logEvents": [{"timestamp": e.timestamp_ms, "message": e.message} for e in batch],
        }
        try:
            client = self._get_client()
            try:
                response = client.put_log_events(**request)
            except client.exceptions.ResourceNotFoundException:
                self._create(client)
                response = client.put_log_events(**request)
        except Exception as exc:
            return self._failure(exc)
        refused = _refused(response.get("rejectedLogEventsInfo") or {}, len(batch))
        self._count("sent", len(batch) - refused)
        if refused:
            self._count("dropped.out_of_window", refused)
            stats.warn_once_per_interval(
                f"{self._prefix}.rejected", "tracekit: CloudWatch Logs rejected %d events: %s",
                refused, response.get("rejectedLogEventsInfo"),
            )  # fmt: skip
        return None

    def _failure(self, exc: Exception) -> tuple[bool, str]:
        """Throttling, 5xx and connection failures are worth retrying; other refusals are not."""
        from botocore.exceptions import ClientError

        stats.report(f"{self._prefix}.put_log_events", msg=f"tracekit: PutLogEvents failed: {exc}")
        if not isinstance(exc, ClientError):
            return True, "connection"
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if status == 429 or "Throttl" in code or code == "ServiceUnavailableException":
            return True, "throttled"
        if status >= 500:
            return True, "server_error"
        return False, "rejected"

    def _count(self, name: str, n: int = 1) -> None:
        if n and not self._worker.abandoned:
            stats.incr(f"{self._prefix}.{name}", n)

    def _create(self, client: Any) -> None:
        for call, kwargs in (
            (client.create_log_group, {"logGroupName": self.log_group}),
            (
                client.create_log_stream,
                {"logGroupName": self.log_group, "logStreamName": self.log_stream},
            ),
        ):
            with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
                call(**kwargs)

    @property
    def client(self) -> Any:
        """The boto3 ``logs`` client (made on first use), e.g. to register botocore event hooks."""
        return self._get_client()

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = aws.client(
                "logs",
                self._region,
                self._endpoint_url,
                max_attempts=self._max_attempts,
                read_timeout=15,
            )
        if self.emf and not self._hooked:
            self._client.meta.events.register(
                "before-sign.cloudwatch-logs.PutLogEvents", _add_emf_header
            )
            self._hooked = True
        return self._client


def _add_emf_header(request: Any, **_: Any) -> None:
    request.headers[EMF_HEADER[0]] = EMF_HEADER[1]


def make_event(message: str, timestamp_ms: int | None = None, prefix: str = "cwlogs") -> Event:
    """An event with its counted size; a message over 1 MB is cut at a character boundary."""
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    data = message.encode("utf-8")
    limit = MAX_EVENT_BYTES - EVENT_OVERHEAD
    if len(data) > limit:
        stats.incr(f"{prefix}.truncated")
        message = data[:limit].decode("utf-8", errors="ignore")
        data = message.encode("utf-8")
    return Event(int(timestamp_ms), message, len(data) + EVENT_OVERHEAD)


def in_window(timestamp_ms: int, now_ms: int | None = None) -> bool:
    """True when PutLogEvents accepts an event of that time (14 days back to 2 hours ahead)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return now_ms - MAX_AGE_MS < timestamp_ms < now_ms + MAX_AHEAD_MS


def _in_window(events: list[Event], now_ms: int) -> list[Event]:
    return [e for e in events if in_window(e.timestamp_ms, now_ms)]


def _refused(info: dict[str, int], count: int) -> int:
    """How many events of a batch ``rejectedLogEventsInfo`` names (too old, expired or too new)."""
    old = max(info.get("tooOldLogEventEndIndex", -1), info.get("expiredLogEventEndIndex", -1)) + 1
    new = info.get("tooNewLogEventStartIndex")
    return min(count, old + (count - new if new is not None else 0))


def batches(events: list[Event]) -> list[list[Event]]:
    """Chronological batches within the count, byte and 24-hour limits of PutLogEvents."""
    result: list[list[Event]] = []
    current: list[Event] = []
    size = 0
    for event in sorted(events, key=lambda e: e.timestamp_ms):
        if current and (
            len(current) >= MAX_BATCH_EVENTS
            or size + event.size > MAX_BATCH_BYTES
            or event.timestamp_ms - current[0].timestamp_ms >= MAX_BATCH_SPAN_MS
        ):
            result.append(current)
            current, size = [], 0
        current.append(event)
        size += event.size
    if current:
        result.append(current)
    return result
