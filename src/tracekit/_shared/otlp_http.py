"""OTLP/HTTP to AWS: a ``requests`` session for OpenTelemetry's OTLP exporters that signs with SigV4.

AWS's OTLP endpoints (X-Ray ``/v1/traces``, CloudWatch Logs ``/v1/logs``) take SigV4-signed requests
only, and OpenTelemetry's exporters cannot sign. They do take a ``requests.Session``: this one signs
each prepared request just before it goes out, with the shared botocore signer, so every attempt
(retries included) has a fresh date and, once they expire, refreshed credentials. The exporter keeps
its own retries (429, 502, 503, 504 with backoff, as the OTLP specification says); the session sees
every attempt, so it counts failures by kind and logs each kind at most once a minute with AWS's
reason, never the credentials. Imported only when an OTLP exporter is configured.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from tracekit._shared import stats
from tracekit._shared.sigv4 import Response, SignedHTTP, SigningError, host_region, signing_service

SIGNED_HEADERS = frozenset(("content-type", "content-encoding", "x-aws-log-group", "x-aws-log-stream"))
"""Headers covered by the signature besides Host and the X-Amz-* ones (what a proxy leaves alone)."""
_KINDS = {401: "forbidden", 403: "forbidden", 429: "throttled", 502: "unavailable", 503: "unavailable",
          504: "unavailable"}  # fmt: skip
_ACCESS_KEY = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b")


def sigv4_service(endpoint: str, mode: str, default: str) -> str | None:
    """The SigV4 service to sign for: ``mode`` when it names one, else the AWS host's (``default``
    for hosts like VPC endpoints); None when the requests go unsigned (``off``, non-AWS host)."""
    if mode == "off":
        return None
    if mode in ("xray", "logs"):
        return mode
    host = urlsplit(endpoint).hostname or ""
    return signing_service(host, default) if host.endswith(".amazonaws.com") else None


def session(endpoint: str, mode: str, *, default_service: str, region: str | None, name: str) -> OtlpSession:
    """The session for an OTLP exporter posting to ``endpoint``; stats keys start with ``name``.

    The region is the endpoint host's (``xray.eu-west-1.amazonaws.com``), else ``region``, else
    botocore's; credentials come from botocore's default chain.
    """
    service = sigv4_service(endpoint, mode, default_service)
    signer = None
    if service is not None:
        host = urlsplit(endpoint).hostname or ""
        signer = SignedHTTP(service, host_region(host) or region)
    return OtlpSession(name, signer)


class OtlpSession(requests.Session):
    """Signs (when ``signer`` is set) and counts every request an OTLP exporter sends."""

    def __init__(self, name: str, signer: SignedHTTP | None) -> None:
        super().__init__()
        self.name = name
        self.signer = signer
        self._last_body: object = None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        if request.body is not None and request.body is self._last_body:
            stats.incr(f"{self.name}.retries")  # the exporter sends the same bytes again
        self._last_body = request.body
        if self.signer is not None:
            self._sign(request, body)
        try:
            response = super().send(request, **kwargs)
        except requests.RequestException as exc:
            self._failed("unreachable", request.url, f"{type(exc).__name__}: {exc}")
            raise
        if response.status_code >= 400:  # the exporter takes 2xx and 3xx as delivered
            kind = _KINDS.get(response.status_code, f"http_{response.status_code}")
            self._failed(kind, request.url, _reason(response))
        return response

    def _sign(self, request: requests.PreparedRequest, body: bytes) -> None:
        assert self.signer is not None
        signed = {
            k: v if isinstance(v, str) else v.decode()
            for k, v in request.headers.items()
            if k.lower() in SIGNED_HEADERS
        }
        try:
            request.headers.update(self.signer.sign(str(request.url), body, signed))
        except SigningError as exc:
            self._failed(exc.reason, request.url, str(exc))
            raise
        except Exception as exc:  # botocore could not load or refresh the credentials
            self._failed("credentials", request.url, f"{type(exc).__name__}: {_scrubbed(str(exc))}")
            raise

    def _failed(self, kind: str, url: str | None, detail: str) -> None:
        stats.report(f"{self.name}.{kind}", msg=f"tracekit: {self.name} export to {url}: {kind}: {detail}")


def _reason(response: requests.Response) -> str:
    """``HTTP 403 ExpiredTokenException: The security token ... is expired`` from AWS's answer.

    Only the first line of AWS's message: a signature mismatch goes on with the canonical request,
    which would put the session token in the log.
    """
    headers = {k.lower(): v for k, v in response.headers.items()}
    answer = Response(response.status_code, headers, response.content or b"")
    message = ""
    if answer.body[:1] == b"{":
        try:
            data = response.json()
            message = str(data.get("message") or data.get("Message") or "")
        except (ValueError, AttributeError):  # not JSON, or not an object
            message = ""
    first_line = _scrubbed(message.split("\n", 1)[0])[:200]
    kind = " ".join(part for part in (f"HTTP {response.status_code}", answer.error_type) if part)
    return f"{kind}: {first_line}" if first_line else kind


def _scrubbed(text: str) -> str:
    return _ACCESS_KEY.sub("***", text)


class _OncePerInterval(logging.Filter):
    """OpenTelemetry's exporters log every failed attempt; tracekit reports each kind once a minute,
    so their lines are let through at the same pace (per message template)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = str(record.msg), time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < stats.LOG_INTERVAL:
                return False
            if len(self._last) < 1000:
                self._last[key] = now
        return True


_quiet = _OncePerInterval()


def quiet_exporter_logs(logger_name: str) -> None:
    """Rate-limit an OpenTelemetry exporter module's log lines (idempotent)."""
    logger = logging.getLogger(logger_name)
    if _quiet not in logger.filters:
        logger.addFilter(_quiet)
