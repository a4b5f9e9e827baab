"""The sidecar's OTLP/HTTP trace receiver (default ``127.0.0.1:4318``, ``POST /v1/traces``).

OpenTelemetry SDKs in the task export here with their defaults. Spans are translated to X-Ray
documents by the shared translator and handed to the sidecar's sink (the same batching path as UDP
segments), and/or the request is forwarded to another OTLP endpoint. Protobuf and JSON bodies,
``gzip``/``deflate``/identity encodings; bodies are size-limited before and after decompression.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from tracekit._shared import stats
from tracekit.sidecar.httpserver import BoundedHandler, BoundedHTTPServer, ByteBudget, HTTPListener
from tracekit.sidecar.otlp_forward import OtlpForwarder
from tracekit.sidecar.otlp_spans import JSON, PROTOBUF, OtlpDecodeError, parse_request, span_count
from tracekit.xray.transports import SegmentSink

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318
TRACES_PATH = "/v1/traces"
MAX_BODY = 4 * 1024 * 1024
"""Largest accepted body, compressed and decompressed (OTLP exporters send far smaller batches)."""
MAX_CONNECTIONS = 32
"""Concurrent connections."""
MAX_BUFFERED = 16 * 1024 * 1024
"""Bytes that the bodies being received may hold at once, over all connections (a compressed
body reserves ``MAX_BODY`` for what it may inflate to); beyond, 503 with Retry-After."""
STATS = "sidecar.otlp"
"""Counters: ``spans.received``, ``spans.rejected.<reason>``, ``requests.rejected.<reason>``."""
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "identity": 0, "": 0}


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, content type, body, and an optional Retry-After in seconds."""

    status: int
    content_type: str
    body: bytes
    retry_after: int | None = None


class OtlpHttpReceiver(HTTPListener):
    """A sidecar :class:`~tracekit.sidecar.pipeline.Listener` for OTLP/HTTP traces (bound when made)."""

    name = "otlp"

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        sink: SegmentSink | None,
        forwarder: OtlpForwarder | None = None,
        annotate_all: bool = False,
        max_body: int = MAX_BODY,
        max_connections: int = MAX_CONNECTIONS,
        max_buffered: int = MAX_BUFFERED,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if sink is None and forwarder is None:
            raise ValueError("the OTLP receiver needs a sink, a forwarder, or both")
        self.sink = sink
        self.forwarder = forwarder
        self._annotate_all = annotate_all
        self._max_body = max_body
        self.budget = ByteBudget(max_buffered)
        self._shutdown_timeout = shutdown_timeout
        self._server = BoundedHTTPServer(
            (host, port), _Handler, "otlp", self, max_connections, stats_prefix=f"{STATS}.requests"
        )

    def stop(self) -> None:
        """Stop receiving, then forward what is buffered within ``shutdown_timeout``.

        The sink is shared with the other listeners, so the sidecar closes it, not this receiver.
        """
        super().stop()
        if self.forwarder is not None:
            self.forwarder.close(self._shutdown_timeout)

    @property
    def buffered_bytes(self) -> int:
        """Requests waiting to be forwarded (translated spans are in the shared sink's count)."""
        return self.forwarder.buffered_bytes if self.forwarder is not None else 0

    def handle(self, body: bytes, content_type: str, encoding: str) -> Reply:
        """Answer one export request as OTLP/HTTP specifies (never raises)."""
        kind = content_type.split(";", 1)[0].strip().lower()
        reply_type = JSON if kind == JSON else PROTOBUF
        try:
            raw = decompress(body, encoding.strip().lower(), self._max_body)
            request = parse_request(raw, kind)
        except _TooLarge as exc:
            stats.incr(f"{STATS}.requests.rejected.too_large")
            return _failure(413, str(exc), reply_type)
        except (OtlpDecodeError, ValueError) as exc:
            stats.incr(f"{STATS}.requests.rejected.bad_request")
            stats.warn_once_per_interval(f"{STATS}.bad_request", "tracekit: OTLP request rejected: %s", exc)
            return _failure(415 if kind not in (JSON, PROTOBUF) else 400, str(exc), reply_type)
        try:
            return self._accept(request, raw, kind, reply_type)
        except Exception as exc:  # a bug here must cost one request, not the receiver
            stats.report(f"{STATS}.internal", exc)
            stats.incr(f"{STATS}.requests.rejected.internal")
            return Reply(500, reply_type, _status_body(13, "internal error", reply_type))

    def _accept(self, request: Any, raw: bytes, kind: str, reply_type: str) -> Reply:
        total = span_count(request)
        stats.incr(f"{STATS}.spans.received", total)
        forward_refused = self.forwarder is not None and not self._forward(request, raw, kind)
        problems, refused = self._translate(request) if self.sink is not None else ([], 0)
        if (self.forwarder is None or forward_refused) and (self.sink is None or refused == total > 0):
            stats.incr(f"{STATS}.requests.rejected.buffer_full")
            return Reply(503, reply_type, _status_body(14, "sidecar buffer full", reply_type), 1)
        stats.incr(f"{STATS}.requests.accepted")
        return Reply(200, reply_type, _response_body(problems, reply_type))

    def _forward(self, request: Any, raw: bytes, kind: str) -> bool:
        assert self.forwarder is not None
        return self.forwarder.submit(raw if kind == PROTOBUF else request.SerializeToString())

    def _translate(self, request: Any) -> tuple[list[str], int]:
        """Submit each span's documents to the sink: what was wrong, and how many found it full."""
        from tracekit.sidecar.otlp_spans import to_readable_spans
        from tracekit.xray.documents import split_document
        from tracekit.xray.segments import to_document

        assert self.sink is not None
        decoded = to_readable_spans(request)
        problems = list(decoded.rejected)
        stats.incr(f"{STATS}.spans.rejected.invalid_span", len(decoded.rejected))
        if decoded.rejected:
            stats.warn_once_per_interval(
                f"{STATS}.invalid_span", "tracekit: OTLP span rejected: %s", decoded.rejected[0]
            )
        refused = 0
        for span in decoded.spans:
            try:
                payloads = split_document(to_document(span, annotate_all=self._annotate_all))
            except Exception as exc:
                stats.report(f"{STATS}.translate", exc)
                payloads = []
            if not payloads:
                stats.incr(f"{STATS}.spans.rejected.untranslatable")
                problems.append(f"span {span.name!r}: cannot be made into an X-Ray document")
            elif not all([_submit(self.sink, p) for p in payloads]):
                refused += 1
                stats.incr(f"{STATS}.spans.rejected.buffer_full")
                problems.append(f"span {span.name!r}: not accepted, the sidecar buffer is full")
        return problems, refused


def _submit(sink: SegmentSink, payload: bytes) -> bool:
    try:
        return sink.submit(payload)
    except Exception as exc:  # a failing sink refuses the span, the request still gets an answer
        stats.report(f"{STATS}.sink", exc)
        return False


class _TooLarge(ValueError):
    pass


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding``, refusing to inflate past ``limit`` bytes (zip bombs)."""
    if len(body) > limit:
        raise _TooLarge(f"body of {len(body)} bytes is over the {limit}-byte limit")
    wbits = _WBITS.get(encoding)
    if wbits is None:
        accepted = "gzip, deflate or identity"
        raise ValueError(f"Content-Encoding {encoding!r} is not supported: expected {accepted}")
    if wbits == 0:
        return body
    inflater = zlib.decompressobj(wbits)
    try:
        raw = inflater.decompress(body, limit)
    except zlib.error as exc:
        raise ValueError(f"body is not valid {encoding}: {exc}") from None
    if inflater.unconsumed_tail:
        raise _TooLarge(f"body inflates past the {limit}-byte limit")
    return raw


def _failure(status: int, message: str, content_type: str) -> Reply:
    return Reply(status, content_type, _status_body(3, message, content_type))


def _status_body(code: int, message: str, content_type: str) -> bytes:
    """A ``google.rpc.Status``, the error body OTLP/HTTP specifies."""
    from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]

    return _encode(Status(code=code, message=message), content_type)


def _response_body(problems: list[str], content_type: str) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse()
    if problems:
        response.partial_success.rejected_spans = len(problems)
        response.partial_success.error_message = "; ".join(problems[:5])[:1000]
    return _encode(response, content_type)


def _encode(message: Any, content_type: str) -> bytes:
    if content_type == JSON:
        from google.protobuf import json_format

        return str(json_format.MessageToJson(message, indent=None)).encode()
    return bytes(message.SerializeToString())


class _Handler(BoundedHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        stats.incr(f"{STATS}.requests.received")
        if self.path.split("?", 1)[0] != TRACES_PATH:
            stats.incr(f"{STATS}.requests.rejected.not_found")
            self._reply(Reply(404, "text/plain", f"not found: POST {TRACES_PATH}\n".encode()), close=True)
            return
        receiver: OtlpHttpReceiver = self.server.owner
        length = self._content_length(receiver._max_body)
        if length is None:
            return
        encoding = self.headers.get("Content-Encoding", "")
        held = length + (receiver._max_body if encoding.strip().lower() not in ("", "identity") else 0)
        if not receiver.budget.take(held):
            stats.incr(f"{STATS}.requests.rejected.busy")
            busy = Reply(503, "text/plain", b"receiving too much at once: retry\n", retry_after=1)
            self._reply(busy, close=True)
            return
        try:
            body = self.rfile.read(length)
            reply = receiver.handle(body, self.headers.get("Content-Type", ""), encoding)
        finally:
            receiver.budget.give(held)
        self._reply(reply)

    def do_GET(self) -> None:
        stats.incr(f"{STATS}.requests.received")
        stats.incr(f"{STATS}.requests.rejected.method")
        self._reply(Reply(405, "text/plain", f"use POST {TRACES_PATH}\n".encode()))

    def _content_length(self, limit: int) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            stats.incr(f"{STATS}.requests.rejected.length_required")
            self._reply(Reply(411, "text/plain", b"Content-Length required\n"), close=True)
            return None
        if not 0 <= length <= limit:
            stats.incr(f"{STATS}.requests.rejected.too_large")
            self._reply(Reply(413, "text/plain", f"body over {limit} bytes\n".encode()), close=True)
            return None
        return length

    def _reply(self, reply: Reply, close: bool = False) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if reply.retry_after is not None:
            self.send_header("Retry-After", str(reply.retry_after))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply.body)
