"""Serving the viewer: on its own port (``tracekit traces serve``) or from the admin port."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tracekit._shared import stats
from tracekit.sidecar.httpserver import BoundedHTTPServer, HTTPListener, send_reply
from tracekit.sidecar.viewer.api import Viewer


def answer(handler: BaseHTTPRequestHandler, viewer: Viewer) -> bool:
    """Send the viewer's reply to ``handler``'s GET; False when the path is not the viewer's.

    A failure (say, a store being replaced under it) is a 500 and a counted, rate-limited warning,
    never a traceback on the sidecar's stderr.
    """
    try:
        reply = viewer.respond(handler.path)
    except Exception as exc:
        stats.report("sidecar.viewer.request", exc, f"tracekit viewer: {handler.path}: {exc}")
        reply = 500, {"Content-Type": "text/plain"}, b"internal error: see the sidecar's log\n"
    if reply is None:
        return False
    send_reply(handler, reply)
    return True


class ViewerServer(HTTPListener):
    """The viewer alone, for a store no sidecar is writing (``tracekit traces serve``)."""

    name = "viewer"

    def __init__(self, address: tuple[str, int], db_path: Path) -> None:
        self.viewer = Viewer(db_path)
        self._server = BoundedHTTPServer(address, _Handler, "viewer", self, max_connections=16)


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    timeout = 10.0
    server: BoundedHTTPServer

    def do_GET(self) -> None:
        owner: ViewerServer = self.server.owner
        if not answer(self, owner.viewer):
            send_reply(self, (404, {"Content-Type": "text/plain"}, b"not found: the viewer is at /\n"))

    def log_message(self, format: str, *args: object) -> None:
        """The page polls every few seconds: no line per request."""
