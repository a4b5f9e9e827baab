"""A Lambda Runtime API server on 127.0.0.1 for the real ``awslambdaric`` to poll (aws-facts.md §9)."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PREFIX = "/2018-06-01/runtime"


class RuntimeApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, on_result: Callable[[], Any] | None = None) -> None:
        """``on_result`` runs when a result (response or error) arrives, before it is acknowledged;
        what it returns is kept in ``seen_at_result[request_id]``."""
        super().__init__(("127.0.0.1", 0), _Handler)
        self.on_result = on_result
        self.seen_at_result: dict[str, Any] = {}
        self.pending: queue.Queue[tuple[str, bytes, dict[str, str]]] = queue.Queue()
        self.results: dict[str, queue.Queue[tuple[str, Any, dict[str, str]]]] = {}
        self.init_errors: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def invoke(
        self, event: Any, trace_id: str | None, timeout: float = 20, time_left: float = 60
    ) -> tuple[str, Any, dict[str, str]]:
        """Queue one invocation due ``time_left`` seconds from now; return ("response" | "error",
        body, lower-case headers) once posted."""
        request_id = str(uuid.uuid4())
        deadline = str(int((time.time() + time_left) * 1000))
        headers = {"Lambda-Runtime-Aws-Request-Id": request_id, "Lambda-Runtime-Deadline-Ms": deadline,
                   "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:fn"}
        if trace_id:
            headers["Lambda-Runtime-Trace-Id"] = trace_id
        self.results[request_id] = queue.Queue()
        self.pending.put((request_id, json.dumps(event).encode(), headers))
        return self.results[request_id].get(timeout=timeout)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: RuntimeApi

    def do_GET(self) -> None:
        _, body, headers = self.server.pending.get()
        self._reply(200, body, {"Content-Type": "application/json", **headers})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = self.path.removeprefix(PREFIX).strip("/").split("/")
        if parts[:2] == ["init", "error"]:
            self.server.init_errors.put(json.loads(body or b"null"))
        else:
            if self.server.on_result is not None:
                self.server.seen_at_result[parts[1]] = self.server.on_result()
            headers = {key.lower(): value for key, value in self.headers.items()}
            self.server.results[parts[1]].put((parts[2], json.loads(body or b"null"), headers))
        self._reply(202, b"{}", {"Content-Type": "application/json"})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class Function:
    """One awslambdaric process serving invocations from a :class:`RuntimeApi`."""

    def __init__(self, api: RuntimeApi, process: subprocess.Popen[bytes], stdout: Path) -> None:
        self.api, self.process, self.stdout = api, process, stdout

    def invoke(
        self, event: Any, trace_id: str | None, time_left: float = 60
    ) -> tuple[str, Any, dict[str, str]]:
        if self.process.poll() is not None:
            raise AssertionError(f"awslambdaric exited {self.process.returncode}:\n{self.output()}")
        return self.api.invoke(event, trace_id, time_left=time_left)

    def output(self) -> str:
        return self.stdout.read_text(errors="replace")

    def emf(self) -> list[dict[str, Any]]:
        """EMF documents the function printed."""
        found = []
        for line in self.output().splitlines():
            start = line.find('{"')
            if start >= 0 and '"_aws"' in line:
                found.append(json.loads(line[start:]))
        return found
