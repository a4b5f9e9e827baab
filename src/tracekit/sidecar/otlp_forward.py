"""Forward received OTLP trace requests to another OTLP/HTTP endpoint (a collector, or X-Ray itself).

X-Ray's own OTLP endpoint (``https://xray.<region>.amazonaws.com/v1/traces``) wants SigV4 with service
``xray``: requests to ``*.amazonaws.com`` are signed by botocore from the task's credentials
(:class:`~tracekit._shared.sigv4.SignedHTTP`), other endpoints get plain POSTs.

Several received requests are sent as one: serialised protobuf messages concatenate into a valid
message whose repeated fields (``resource_spans``) are the union of theirs, so no re-encoding is needed.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from tracekit._shared import stats
from tracekit._shared.batching import BatchQueue, QueuedSink
from tracekit._shared.sigv4 import SignedHTTP, SigningError, host_region, signing_service
from tracekit.sidecar.otlp_spans import PROTOBUF

STATS = "sidecar.otlp.forward"
RETRYABLE = frozenset({429, 502, 503, 504})
"""The statuses OTLP/HTTP says a client should retry."""


class OtlpForwarder(QueuedSink[bytes]):
    """Bounded, batched, retried forwarding of serialised ``ExportTraceServiceRequest`` bodies."""

    def __init__(
        self,
        url: str,
        *,
        sigv4: bool | None = None,
        region: str | None = None,
        credentials: object = None,
        max_bytes: int = 16 * 1024 * 1024,
        max_batch: int = 32,
        workers: int = 2,
        timeout: float = 10.0,
        retry_for: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--otlp-forward {url!r} is not valid: expected http(s)://host[:port]/path")
        self.url = url
        self._path = parts.path or "/v1/traces"
        netloc = parts.netloc.rpartition("@")[2]
        self._plain_url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        self._auth = _basic_auth(parts.username, parts.password)
        self._timeout = timeout
        self._retry_for = retry_for
        sign = parts.hostname.endswith(".amazonaws.com") if sigv4 is None else sigv4
        self._signed = (
            SignedHTTP(
                signing_service(parts.hostname), region or host_region(parts.hostname),
                f"{parts.scheme}://{parts.netloc}",
                credentials=credentials, timeout=timeout,
            )
            if sign
            else None
        )
        self._queue: BatchQueue[bytes] = BatchQueue(
            self._deliver,
            max_batch=max_batch,
            max_bytes=max_bytes,
            workers=workers,
            max_wait=0.5,
            name=STATS,
            delivery_copies=1.0,  # the requests joined into one body
        )

    @property
    def signed(self) -> bool:
        return self._signed is not None

    def _deliver(self, bodies: list[bytes]) -> None:
        body = b"".join(bodies)
        reason = self._queue.retry(
            lambda: self._post(body),
            retry_for=self._retry_for,
            on_retry=lambda _: stats.incr(f"{STATS}.retries"),
        )
        if reason is None:
            stats.incr(f"{STATS}.sent_requests", len(bodies))
        elif not self._queue.abandoned:
            self._queue.count_dropped(reason, len(bodies))

    def _post(self, body: bytes) -> tuple[bool, str] | None:
        """None when delivered, else (worth retrying, reason); failures are logged rate-limited."""
        try:
            status = self._send(body)
        except SigningError as exc:
            stats.report(f"{STATS}.{exc.reason}", exc)
            return False, exc.reason
        except (OSError, http.client.HTTPException) as exc:
            stats.report(f"{STATS}.unreachable", exc, f"tracekit: OTLP forward to {self.url} failed: {exc}")
            return True, "unreachable"
        if status < 300:
            return None
        stats.report(f"{STATS}.http_{status}", msg=f"tracekit: OTLP forward to {self.url}: HTTP {status}")
        return status in RETRYABLE, f"http_{status}"

    def _send(self, body: bytes) -> int:
        if self._signed is not None:
            return self._signed.post(self._path, body, PROTOBUF).status
        headers = {"Content-Type": PROTOBUF, **self._auth}
        request = urllib.request.Request(self._plain_url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code


def _basic_auth(user: str | None, password: str | None) -> dict[str, str]:
    """``user:password@`` in the URL becomes an ``Authorization: Basic`` header (never logged)."""
    if user is None:
        return {}
    import base64

    pair = f"{unquote(user)}:{unquote(password or '')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
