"""One kept-alive HTTP/1.1 connection for small JSON exchanges with AWS APIs.

``http.client`` costs about 80 us of CPU per exchange, most of it building the request header by
header and parsing the response headers with the ``email`` package: a third of a 50-document
PutTraceSegments call in the sidecar. Here a request is one write and a response is read from one
buffered reader: the status line, ``name: value`` header lines, then a ``Content-Length``, chunked
or read-to-close body. Failures raise ``OSError`` or ``http.client.HTTPException`` subclasses, as
``http.client`` does, and leave the connection closed.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from http.client import HTTPException, IncompleteRead, LineTooLong, RemoteDisconnected
from typing import BinaryIO

MAX_LINE = 65536
MAX_HEADERS = 100
"""Limits of a response's status and header lines, as in ``http.client``."""
MAX_BODY = 16 * 1024 * 1024
"""Largest response body read; AWS API answers are a few KB."""


class Connection:
    """POSTs to one ``scheme://host:port`` over one socket, reopened after a failure or a close."""

    def __init__(self, scheme: str, host: str, port: int | None, timeout: float) -> None:
        self._tls = scheme == "https"
        self._host = host
        self._port = port or (443 if self._tls else 80)
        self._timeout = timeout
        self._open: tuple[socket.socket, BinaryIO] | None = None

    def post(
        self, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; the status, the lower-cased headers and the body of the answer."""
        try:
            sock, reader = self._open or self._connect()
            head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            request = f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n"
            sock.sendall(request.encode("latin-1") + body)
            status, received, keep = _read_head(reader)
            data = _read_body(reader, status, received)
        except (OSError, HTTPException):  # OSError first: ssl's errors are ValueErrors too
            self.close()
            raise
        except ValueError as exc:  # a length or chunk size that is not a number
            self.close()
            raise HTTPException(f"malformed HTTP response: {exc}") from exc
        if not keep:
            self.close()
        return status, received, data

    def close(self) -> None:
        if self._open is not None:
            sock, reader = self._open
            self._open = None
            reader.close()  # the socket's file descriptor closes with its last user
            sock.close()

    def _connect(self) -> tuple[socket.socket, BinaryIO]:
        sock = socket.create_connection((self._host, self._port), self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._host)
        self._open = sock, sock.makefile("rb")
        return self._open


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise LineTooLong("header line")
    return line


def _read_head(reader: BinaryIO) -> tuple[int, dict[str, str], bool]:
    """Status, headers and whether the connection stays open, skipping 1xx interim answers."""
    while True:
        line = _line(reader)
        if not line:
            raise RemoteDisconnected("remote end closed connection without response")
        version, status, _ = [*line.decode("latin-1").split(None, 2), "", ""][:3]
        if not version.startswith("HTTP/1.") or not status.isdigit():
            raise HTTPException(f"bad status line {line[:80]!r}")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = _line(reader)
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        else:
            raise HTTPException(f"more than {MAX_HEADERS} headers")
        if not 100 <= int(status) < 200:
            connection = headers.get("connection", "").lower()
            keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
            framed = "content-length" in headers or "transfer-encoding" in headers
            return int(status), headers, keep and (framed or int(status) in (204, 304))


def _read_body(reader: BinaryIO, status: int, headers: dict[str, str]) -> bytes:
    if status in (204, 304):
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        held = 0
        while size := int(_line(reader).split(b";", 1)[0], 16):
            held = _bounded(held + size)
            chunks.append(_exactly(reader, size))
            _line(reader)
        while _line(reader) not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(chunks)
    length = headers.get("content-length")
    if length is None:  # the body ends with the connection
        data = reader.read(MAX_BODY + 1)
        _bounded(len(data))
        return data
    return _exactly(reader, _bounded(int(length)))


def _bounded(size: int) -> int:
    if size > MAX_BODY:
        raise HTTPException(f"response body over {MAX_BODY} bytes")
    return size


def _exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise IncompleteRead(data, size - len(data))
    return data
