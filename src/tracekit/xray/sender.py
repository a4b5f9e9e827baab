"""Batched ``PutTraceSegments``: one path to X-Ray for the sidecar and the direct (no daemon) mode.

Documents wait in one byte-bounded buffer; worker threads take batches of up to 50 and send them
concurrently, retrying throttling, 5xx and connection failures with capped exponential backoff and
full jitter. Nothing is dropped silently: every document that does not reach X-Ray is counted under
``<stats_prefix>.dropped.<reason>`` and every unprocessed one under
``<stats_prefix>.unprocessed.<ErrorCode>`` in :mod:`tracekit._shared.stats`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from tracekit._shared import stats
from tracekit._shared.batching import BatchQueue, QueuedSink
from tracekit._shared.sigv4 import Response, SignedHTTP, SigningError

MAX_BATCH = 50
"""PutTraceSegments documents per call that every X-Ray sender uses."""
MAX_BATCH_BYTES = 1024 * 1024
"""Bytes of documents per call: a batch of 50 documents of 60 KB would be 3 MB, held several times
over while it is sent."""
DELIVERY_COPIES = 2.0
"""Copies of a batch held while it is sent (the JSON body being built, then the body sent),
counted against ``max_buffer_bytes`` so that the limit bounds what is really held."""
PATH = "/TraceSegments"
_CODE = re.compile(r"[^A-Za-z0-9_]")
_PRINTABLE = bytes(range(0x20, 0x7F))
"""Bytes that JSON strings hold as they are, but for ``"`` and ``\\``."""


class SegmentSender(QueuedSink[str | bytes]):
    """Buffer segment documents and deliver them with ``PutTraceSegments``, bounded and counted."""

    def __init__(
        self,
        region: str | None = None,
        endpoint_url: str | None = None,
        *,
        max_batch: int = MAX_BATCH,
        max_buffer_bytes: int = 16 * 1024 * 1024,
        workers: int = 4,
        batch_timeout: float = 1.0,
        retry_for: float = 60.0,
        max_backoff: float = 5.0,
        timeout: float = 10.0,
        credentials: Any = None,
        session: Any = None,
        stats_prefix: str = "xray_api",
        on_batch: Callable[[float], None] | None = None,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch={max_batch} is not valid: expected 1..{MAX_BATCH}")
        self.http = SignedHTTP(
            "xray",
            region, endpoint_url, credentials=credentials, session=session, timeout=timeout
        )
        self._retry_for = retry_for
        self._max_backoff = max_backoff
        self._prefix = stats_prefix
        self._on_batch = on_batch
        self.last_success: float | None = None
        """``time.monotonic()`` of the last call X-Ray answered (any status below 500 but 429)."""
        self.last_error: str | None = None
        self._queue: BatchQueue[str | bytes] = BatchQueue(
            self._deliver,
            max_batch=max_batch,
            max_bytes=max_buffer_bytes,
            workers=workers,
            max_wait=batch_timeout,
            name=stats_prefix,
            on_exit=self.http.close,
            max_batch_bytes=MAX_BATCH_BYTES,
            delivery_copies=DELIVERY_COPIES,
        )

    def _deliver(self, batch: list[str | bytes]) -> None:
        """One PutTraceSegments call, retried until it is answered, refused, or too late."""
        body = request_body(batch)
        reason = self._queue.retry(
            lambda: self._attempt(body, len(batch)),
            retry_for=self._retry_for,
            max_backoff=self._max_backoff,
            on_retry=lambda why: self._count(f"retries.{why}"),
        )
        if reason is not None:
            self._count(f"dropped.{reason}", len(batch))

    def _attempt(self, body: bytes, count: int) -> tuple[bool, str] | None:
        """Send once: None when answered, else (worth retrying?, reason)."""
        started = time.monotonic()
        try:
            resp = self.http.post(PATH, body)
        except SigningError as exc:
            stats.report(f"{self._prefix}.{exc.reason}", msg=f"tracekit: {exc}")
            return False, exc.reason
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            stats.report(f"{self._prefix}.connection", msg=f"PutTraceSegments: {self.last_error}")
            return True, "connection"
        if resp.status == 200:
            self._answered(resp, count, time.monotonic() - started)
            return None
        error = resp.error_type or f"HTTP {resp.status}"
        self.last_error = f"HTTP {resp.status} {error}"
        if resp.status == 429 or "Throttl" in error:
            return True, "throttled"
        if resp.status >= 500:
            return True, "server_error"
        self.last_success = time.monotonic()
        text = f"tracekit: PutTraceSegments refused: {self.last_error}"
        stats.report(f"{self._prefix}.rejected", msg=text)
        return False, "rejected"

    def _answered(self, resp: Response, count: int, latency: float) -> None:
        self.last_success = time.monotonic()
        self.last_error = None
        try:
            unprocessed = json.loads(resp.body or b"{}").get("UnprocessedTraceSegments") or []
        except (ValueError, AttributeError):
            unprocessed = []
        for item in unprocessed:
            code = _CODE.sub("_", str(item.get("ErrorCode") or "unknown"))[:64]
            self._count(f"unprocessed.{code}")
        self._count("sent", count - len(unprocessed))
        self._count("batches")
        if self._on_batch is not None:
            self._on_batch(latency)

    def _count(self, name: str, n: int = 1) -> None:
        if not self._queue.abandoned:
            stats.incr(f"{self._prefix}.{name}", n)


def request_body(batch: list[str | bytes]) -> bytes:
    """``{"TraceSegmentDocuments": [...]}``, byte for byte what ``json.dumps`` gives, in half its
    CPU for the usual batch (the body was a third of the sidecar's CPU per call at 80,000
    documents/s): documents in printable ASCII, the serialiser's output, need only their quotes and
    backslashes escaped. Anything else takes the C JSON encoder. One large allocation, the body:
    large temporary copies would stay in the workers' malloc arenas and grow the RSS."""
    parts = []
    for doc in batch:
        if type(doc) is not bytes or doc.translate(None, _PRINTABLE):
            return _encoded_body(batch)
        parts.append(doc.replace(b"\\", b"\\\\").replace(b'"', b'\\"'))
    if not parts:
        return _encoded_body(batch)
    parts[0] = b'{"TraceSegmentDocuments":["' + parts[0]
    parts[-1] += b'"]}'
    return b'","'.join(parts)


def _encoded_body(batch: list[str | bytes]) -> bytes:
    """The body through the C JSON encoder (one call: a call per document costs more); at most two
    copies held at once."""
    texts = [doc if isinstance(doc, str) else doc.decode("utf-8", "replace") for doc in batch]
    text = json.dumps({"TraceSegmentDocuments": texts}, separators=(",", ":"))
    del texts
    return text.encode()
