"""Headless Firefox (Debian's firefox-esr) driven over WebDriver BiDi, its built-in remote protocol.

Playwright's Firefox is a patched build it downloads, and Selenium needs geckodriver, which Debian
does not package; BiDi needs neither: Firefox listens on ``--remote-debugging-port`` itself.
Expressions are evaluated in the page and return JSON text, which :meth:`Firefox.json` parses.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BINARY = Path("/usr/bin/firefox-esr")


class Firefox:
    def __init__(self, binary: Path = BINARY, timeout: float = 30.0) -> None:
        from websockets.sync.client import connect

        self._home = tempfile.mkdtemp(prefix="tracekit-firefox-")
        self._connection = contextlib.ExitStack()
        self._proc = subprocess.Popen(
            [str(binary), "--headless", "--no-remote", "--profile", self._home,
             "--remote-debugging-port=0", "about:blank"],
            env={"HOME": self._home, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        server = Path(self._home) / "WebDriverBiDiServer.json"  # where port 0 became a real one
        deadline = time.monotonic() + timeout
        while True:
            try:
                port = json.loads(server.read_text())["ws_port"]
                self._ws = self._connection.enter_context(
                    connect(f"ws://127.0.0.1:{port}/session", open_timeout=2, max_size=None))
                break
            except (OSError, ValueError, KeyError):  # not written or not listening yet
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.close()
                    raise
                time.sleep(0.2)
        self._next = 0
        self.version = self.call("session.new", capabilities={})["capabilities"]["browserVersion"]
        self._context = self.call("browsingContext.getTree")["contexts"][0]["context"]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self._ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=30))
            if message.get("id") == self._next:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
                return dict(message["result"])

    def goto(self, url: str) -> None:
        self.call("browsingContext.navigate", context=self._context, url=url, wait="complete")

    def json(self, expression: str, timeout: float = 8.0) -> Any:
        """``JSON.parse`` of the expression's value, polled until it is truthy (the page loads data
        asynchronously) or ``timeout`` passes; then the last value."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.call("script.evaluate", expression=f"JSON.stringify({expression})",
                               target={"context": self._context}, awaitPromise=True)
            if result.get("type") == "exception":
                raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
            value = json.loads(result["result"].get("value") or "null")
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.1)

    def close(self) -> None:
        self._connection.close()
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        shutil.rmtree(self._home, ignore_errors=True)
