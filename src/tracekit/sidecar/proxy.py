"""The TCP sampling proxy: what X-Ray SDKs call on the daemon's TCP port, and nothing more.

The X-Ray daemon re-signs any path with the task's credentials; this proxy only forwards the three
sampling operations, refuses everything else with 403, and bounds request sizes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

from tracekit._shared import stats
from tracekit._shared.sigv4 import SignedHTTP
from tracekit.sidecar.httpserver import BoundedHandler, BoundedHTTPServer, HTTPListener, Reply, send_reply

SAMPLING_PATHS = frozenset({"/GetSamplingRules", "/SamplingTargets", "/SamplingStatisticSummaries"})
MAX_BODY = 64 * 1024
"""Largest request body accepted; 25 statistics documents take about 5 KB."""

Backend = Callable[[str, str, Mapping[str, str], bytes], Reply]
"""``(method, path, headers, body) -> (status, headers, body)``: upstream X-Ray or a local plane."""


def upstream_backend(http: SignedHTTP) -> Backend:
    """Forward to X-Ray, signed with SigV4 from the sidecar's own credentials."""

    def forward(method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        resp = http.post(path, body, headers.get("content-type") or "application/json")
        keep = {k: v for k, v in resp.headers.items() if k in ("content-type", "x-amzn-errortype")}
        return resp.status, keep, resp.body

    return forward


def error_reply(status: int, code: str, message: str) -> Reply:
    body = json.dumps({"__type": code, "message": message}).encode()
    return status, {"content-type": "application/json", "x-amzn-errortype": code}, body


class SamplingProxy(HTTPListener):
    """HTTP on the daemon's TCP address; one thread per connection, bounded request size."""

    name = "tcp"

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        self.backend = backend
        self.last_success: float | None = None
        self._server = BoundedHTTPServer(address, _Handler, "proxy", self)

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one request: 403 off the sampling paths, otherwise the backend's reply."""
        path = path.split("?", 1)[0]
        if method != "POST" or path not in SAMPLING_PATHS:
            stats.incr("sidecar.proxy.rejected.forbidden")
            allowed = ", ".join(sorted(SAMPLING_PATHS))
            return error_reply(403, "AccessDeniedException", f"{method} {path}: only POST {allowed}")
        stats.incr("sidecar.proxy.requests")
        try:
            reply = self.backend(method, path, headers, body)
        except Exception as exc:  # connection refused, no credentials...
            text = f"sampling proxy: X-Ray call failed: {type(exc).__name__}: {exc}"
            stats.report("sidecar.proxy.upstream", msg=text)  # no traceback: the cause is enough
            return error_reply(502, "BadGateway", f"sampling upstream failed: {type(exc).__name__}")
        if reply[0] < 500:
            self.last_success = time.monotonic()
        return reply


class _Handler(BoundedHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        refused = self._refuse_body()
        if refused is not None:
            self.close_connection = True  # the unread body must not be taken for the next request
            reply = refused
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = self.server.owner.handle(method, self.path, headers, body)
        send_reply(self, reply)

    def _refuse_body(self) -> Reply | None:
        """An error reply for a body that is chunked, unsized or over ``MAX_BODY``; else None."""
        if self.headers.get("Transfer-Encoding"):
            stats.incr("sidecar.proxy.rejected.chunked")
            return error_reply(411, "LengthRequired", "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            stats.incr("sidecar.proxy.rejected.too_large")
            return error_reply(413, "RequestTooLarge", f"body must be 0..{MAX_BODY} bytes")
        return None
