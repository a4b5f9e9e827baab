"""SigV4-signed POSTs to an AWS endpoint over kept-alive connections, one per thread.

A boto3 client call costs far more CPU than the request itself (parameter validation, event hooks,
response parsing). The sidecar and the direct sender make hundreds of calls a second, so they sign
with botocore's own SigV4 signer and send over :mod:`tracekit._shared.keepalive` connections
instead. The same signer serves X-Ray (``xray``) and CloudWatch Logs (``logs``): the service is a parameter.
botocore is imported on first use only, so importing this module stays cheap.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from tracekit._shared import settings

if TYPE_CHECKING:
    from tracekit._shared.keepalive import Connection


class SigningError(RuntimeError):
    """No credentials or no region: the request cannot be signed; ``reason`` is a counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Response(NamedTuple):
    """An HTTP response: status, lower-cased headers, body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def error_type(self) -> str:
        """The AWS error code (``ThrottledException``...) from the header or JSON body, or ''."""
        raw = self.headers.get("x-amzn-errortype", "")
        if not raw and self.status >= 400 and self.body[:1] == b"{":
            import json

            try:
                raw = str(json.loads(self.body).get("__type", ""))
            except (ValueError, AttributeError):
                raw = ""
        return raw.split(":", 1)[0].rsplit("#", 1)[-1]


def signing_service(host: str, default: str = "xray") -> str:
    """The SigV4 service of an AWS endpoint host: ``logs.eu-west-1.amazonaws.com`` -> ``logs``."""
    label = host.split(".", 1)[0].lower()
    return label if host.endswith(".amazonaws.com") and label in ("xray", "logs") else default


def host_region(host: str) -> str | None:
    """The region in an AWS endpoint host (``xray.us-west-2.amazonaws.com`` -> ``us-west-2``)."""
    parts = host.lower().split(".")
    return parts[1] if len(parts) >= 4 and host.endswith(".amazonaws.com") else None


class SignedHTTP:
    """POST to an AWS endpoint with SigV4 for ``service`` from botocore's credential chain."""

    def __init__(
        self,
        service: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        *,
        credentials: Any = None,
        session: Any = None,
        timeout: float = 10.0,
    ) -> None:
        self.service = service
        self._region = settings.region(region)
        self._endpoint = endpoint_url
        self._credentials = credentials
        self._session = session
        self._timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def region(self) -> str | None:
        return self._region

    def base_url(self) -> str:
        """The endpoint URL, defaulting to the service's regional endpoint."""
        if self._endpoint:
            return self._endpoint.rstrip("/")
        return f"https://{self.service}.{self._require_region()}.amazonaws.com"

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> Response:
        """Sign and send; raises ``OSError``/``HTTPException`` when the connection fails."""
        parts = urlsplit(self.base_url() + path)
        netloc = parts.netloc.rpartition("@")[2]  # SigV4 authenticates: user:password@ is not sent
        url = f"{parts.scheme}://{netloc}{parts.path}"
        headers = self.sign(url, body, {"Content-Type": content_type})
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            from tracekit._shared.keepalive import Connection  # http.client's exceptions: 14 ms

            conn = Connection(parts.scheme, parts.hostname or "", parts.port, self._timeout)
            self._local.conn = conn
        return Response(*conn.post(parts.path or "/", headers, body))

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def sign(self, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` plus Host and the SigV4 headers for a POST of ``body`` to ``url``.

        Only the headers given (and Host) are signed, so a proxy that rewrites ``Connection`` or
        ``User-Agent`` does not break the signature. Raises :class:`SigningError`.
        """
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        parts = urlsplit(url)
        default_port = ":443" if parts.scheme == "https" else ":80"
        host = parts.netloc.removesuffix(default_port)
        request = AWSRequest(method="POST", url=url, data=body, headers={"Host": host, **headers})
        SigV4Auth(self._frozen_credentials(), self.service, self._require_region()).add_auth(request)
        return dict(request.headers.items())

    def _require_region(self) -> str:
        if self._region is None:
            with self._lock:
                self._region = self._botocore_session().get_config_variable("region")
        if not self._region:
            raise SigningError(
                "no_region", "no AWS region: pass --region or set AWS_REGION (needed for SigV4)"
            )
        return self._region

    def _frozen_credentials(self) -> Any:
        """One consistent key/secret/token, refreshed first when refreshable credentials expire
        (reading the three fields one by one could mix two generations during a refresh)."""
        with self._lock:
            if self._credentials is None:
                self._credentials = self._botocore_session().get_credentials()
            if self._credentials is None:
                raise SigningError(
                    "no_credentials", "no AWS credentials found by botocore's provider chain"
                )
            credentials = self._credentials
        frozen = getattr(credentials, "get_frozen_credentials", None)
        return frozen() if callable(frozen) else credentials

    def _botocore_session(self) -> Any:
        if self._session is None:
            import botocore.session

            self._session = botocore.session.get_session()
        # A boto3 Session wraps a botocore one.
        return getattr(self._session, "_session", self._session)
