"""An HTTP upstream that fails on demand in front of a real one (moto, the X-Ray stub).

``FlakyUpstream(target).start()`` listens on a free loopback port and forwards every request to
``target`` unchanged, except while an outage is set: ``outage(seconds, mode)`` answers 503
``ServiceUnavailableException`` (mode ``"503"``) or holds the request without answering (mode
``"hang"``) for that long. Used by the fault tests and ``bench/bench_faults.py``.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FlakyUpstream:
    def __init__(self, target: str) -> None:
        self.target = urlsplit(target)
        self._until = 0.0
        self._mode = "503"
        self.failed = 0
        """Requests answered with a failure (or held) during outages."""
        self.forwarded = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner._serve(self, body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FlakyUpstream:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def outage(self, seconds: float, mode: str = "503") -> None:
        """Fail every request for the next ``seconds`` (``"503"`` or ``"hang"``)."""
        self._mode = mode
        self._until = time.monotonic() + seconds

    def _serve(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        left = self._until - time.monotonic()
        if left > 0:
            self.failed += 1
            if self._mode == "hang":
                time.sleep(left)
                handler.close_connection = True
                return
            reply = b'{"__type":"ServiceUnavailableException","message":"outage"}'
            handler.send_response(503)
            handler.send_header("Content-Type", "application/x-amz-json-1.1")
            handler.send_header("x-amzn-ErrorType", "ServiceUnavailableException")
            handler.send_header("Content-Length", str(len(reply)))
            handler.end_headers()
            handler.wfile.write(reply)
            return
        conn = http.client.HTTPConnection(self.target.hostname, self.target.port, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
            conn.request("POST", handler.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.forwarded += 1
        handler.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
