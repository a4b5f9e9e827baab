"""The kept-alive HTTP/1.1 connection under SignedHTTP: real servers (http.server, a scripted TCP
peer for the answers http.server does not give, TLS with a certificate made here)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.client import HTTPException, IncompleteRead
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from botocore.credentials import Credentials

from support.sigv4 import expected_signature
from tracekit._shared.keepalive import Connection
from tracekit._shared.sigv4 import SignedHTTP

CREDENTIALS = Credentials("AKIDEXAMPLE", "secret")


class Echo(BaseHTTPRequestHandler):
    """Answers every POST with its body reversed; remembers connections, headers and bodies."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[tuple[str, int], dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.client_address, dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", "r-1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    Echo.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def echo() -> Iterator[str]:
    server = serve()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_share_one_connection_and_are_signed(echo: str) -> None:
    http = SignedHTTP("xray", "us-east-1", echo, credentials=CREDENTIALS)
    answers = [http.post("/TraceSegments", b'{"n":%d}' % i) for i in range(3)]
    assert [a.body for a in answers] == [b'}0:"n"{', b'}1:"n"{', b'}2:"n"{']
    assert answers[0].status == 200 and answers[0].headers["x-amzn-requestid"] == "r-1"
    assert len({client for client, _, _ in Echo.seen}) == 1  # kept alive
    _, headers, body = Echo.seen[-1]
    url = f"{echo}/TraceSegments"
    assert headers["Authorization"].endswith(
        "Signature=" + str(expected_signature(url, headers, body, "secret"))
    )
    http.close()
    http.post("/TraceSegments", b"{}")
    assert len({client for client, _, _ in Echo.seen}) == 2  # reopened after close


def scripted(answers: list[bytes]) -> tuple[int, list[int]]:
    """A TCP peer that reads each request and writes the next answer as given; an answer ending
    in ``CLOSE`` closes the connection after it. Returns its port and the connection count."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections = [0]

    def run() -> None:
        with listener:
            while answers:
                conn, _ = listener.accept()
                connections[0] += 1
                with conn, conn.makefile("rb") as reader:
                    while answers:
                        head = b""
                        while (line := reader.readline()) not in (b"\r\n", b""):
                            head += line
                        if not line:  # the client went away
                            break
                        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                        reader.read(length)
                        answer = answers.pop(0)
                        conn.sendall(answer.removesuffix(b"CLOSE"))
                        if answer.endswith(b"CLOSE"):
                            break

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1], connections


def test_bodies_by_length_chunks_or_close_and_interim_answers() -> None:
    port, connections = scripted([
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.0 500 Oops\r\nx-amzn-ErrorType: InternalFailure:http://x\r\n\r\nto the endCLOSE",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1CLOSE",
        b"HTTP/1.1 200 OK\r\n\r\nno length: to the endCLOSE",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2",
    ])  # fmt: skip
    conn = Connection("http", "127.0.0.1", port, 5.0)
    got = [conn.post("/", {"Host": "x"}, b"{}") for _ in range(7)]
    assert [(status, body) for status, _, body in got] == [
        (200, b"ok"), (200, b"abcde"), (204, b""), (500, b"to the end"), (200, b"1"),
        (200, b"no length: to the end"), (200, b"2"),
    ]  # fmt: skip
    assert got[3][1]["x-amzn-errortype"] == "InternalFailure:http://x"
    assert connections[0] == 4  # reopened after HTTP/1.0, Connection: close and an unframed body


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"CLOSE", ConnectionError),  # closed without answering
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshortCLOSE", IncompleteRead),
        (b"SSH-2.0-OpenSSH\r\n\r\nCLOSE", HTTPException),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\nCLOSE", HTTPException),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nCLOSE", HTTPException),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabCLOSE", IncompleteRead),
    ],
)
def test_broken_answers_raise_and_the_next_call_reconnects(answer: bytes, error: type[Exception]) -> None:
    port, connections = scripted([answer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    conn = Connection("http", "127.0.0.1", port, 5.0)
    with pytest.raises(error):
        conn.post("/", {"Host": "x"}, b"{}")
    assert conn.post("/", {"Host": "x"}, b"{}")[2] == b"ok"
    assert connections[0] == 2


def test_a_silent_peer_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        conn = Connection("http", "127.0.0.1", silent.getsockname()[1], 0.3)
        with pytest.raises(TimeoutError):
            conn.post("/", {"Host": "x"}, b"{}")


def test_https_verifies_the_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = serve(tls)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ssl.SSLCertVerificationError):  # not trusted by default
            SignedHTTP("xray", "us-east-1", url, credentials=CREDENTIALS).post("/TraceSegments", b"{}")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        http = SignedHTTP("xray", "us-east-1", url, credentials=CREDENTIALS)
        assert http.post("/TraceSegments", b'{"a":1}').body == b'}1:"a"{'
        assert Echo.seen[-1][1]["Host"] == f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
