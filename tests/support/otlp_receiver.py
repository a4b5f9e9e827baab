"""An OTLP trace and log receiver for tests: the collector stand-in (HTTP protobuf/JSON and gRPC).

Requests are decoded with the reference messages of ``opentelemetry-proto``, so what the tests see is
what any collector would see. Both listeners bind 127.0.0.1 on free ports. Fault switches make it
answer with an error status (``fail``) or refuse connections like a collector that is down
(``down``/``up``, same ports).

    with OtlpReceiver() as rx:
        exporter = OTLPSpanExporter(endpoint=rx.traces_url)          # HTTP
        exporter = GrpcOTLPSpanExporter(endpoint=rx.grpc_endpoint)   # gRPC, insecure
        ...
        span = rx.wait_for(1)[0]        # {"trace_id": "5759e988...", "name": ..., ...}

As AWS's OTLP endpoints (X-Ray ``/v1/traces``, CloudWatch Logs ``/v1/logs``), ``OtlpReceiver(sigv4=
{access_key: secret})`` recomputes each HTTP request's SigV4 signature with botocore and answers 403
with AWS's error types when it is missing, wrong, or made with an unknown (``revoke_key``) key.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

TRACES_PATH = "/v1/traces"
LOGS_PATH = "/v1/logs"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"

Span = dict[str, Any]
"""A decoded span: trace_id, span_id, parent_span_id (hex or None), name, kind ("SERVER"...),
start/end_time_unix_nano, attributes, events, links, status {code, message}, resource, scope,
trace_state, flags."""

_GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
_ID_KEYS = ("traceId", "spanId", "parentSpanId")
Log = dict[str, Any]
"""A decoded log record: trace_id, span_id (hex or None), body, severity_text, severity_number,
time_unix_nano, attributes, resource, scope."""
_AWS_ERRORS = {
    403: ("AccessDeniedException", "User is not authorized to perform this action"),
    429: ("ThrottlingException", "Rate exceeded"),
}


@dataclass(frozen=True)
class Request:
    """One export call as received: useful to check headers, compression and fault handling."""

    transport: str
    """``http`` or ``grpc``."""
    headers: dict[str, str]
    """Lower-case header (or gRPC metadata) names."""
    content_type: str
    encoding: str
    """HTTP ``Content-Encoding``: ``identity``, ``gzip`` or ``deflate``; ``unknown`` for gRPC, whose
    compression grpcio undoes before the handler sees the call."""
    status: int
    """What the receiver answered, as an HTTP status (gRPC codes are mapped from it)."""
    span_count: int
    path: str = TRACES_PATH
    log_count: int = 0
    sigv4: str = "unchecked"
    """With ``sigv4`` keys: ``valid``, ``missing``, ``unknown_key`` or ``mismatch``."""
    access_key: str | None = None
    service: str | None = None
    region: str | None = None
    signed_headers: tuple[str, ...] = ()
    body_size: int = 0
    """HTTP body bytes once decompressed (what a request size limit is about)."""


@dataclass
class _Fault:
    status: int
    remaining: int | None
    retry_after: float | None


class OtlpReceiver:
    """OTLP/HTTP (protobuf and JSON, gzip/deflate/identity) and OTLP/gRPC trace receiver; OTLP/HTTP
    protobuf logs on ``/v1/logs``."""

    def __init__(self, grpc_enabled: bool = True, sigv4: Mapping[str, str] | None = None) -> None:
        self._grpc_enabled = grpc_enabled
        self._keys = dict(sigv4) if sigv4 is not None else None
        self._cond = threading.Condition()
        self._spans: list[Span] = []
        self._logs: list[Log] = []
        self._requests: list[Request] = []
        self._fault: _Fault | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None
        self._http_port = 0
        self._grpc_port = 0

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        """Bind both listeners (free ports the first time, the same ports after ``down``)."""
        http_server = _HttpServer(("127.0.0.1", self._http_port), _Handler, self)
        self._http_port = http_server.server_address[1]
        self._http = http_server
        self._http_thread = threading.Thread(
            target=http_server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._http_thread.start()
        if self._grpc_enabled:
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
            port = server.add_insecure_port(f"127.0.0.1:{self._grpc_port}")
            if not port:
                raise OSError(f"cannot bind gRPC port 127.0.0.1:{self._grpc_port}")
            self._grpc_port = port
            server.start()
            self._grpc = server
        return self

    def stop(self) -> None:
        """Close both listeners; received data stays readable."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(timeout=5)
            self._grpc = None

    def down(self) -> None:
        """Fault: stop listening, so connections are refused (a collector that crashed)."""
        self.stop()

    def up(self) -> None:
        """Listen again on the same ports after ``down``."""
        self.start()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (HTTP), e.g. ``http://127.0.0.1:4318``."""
        return f"http://127.0.0.1:{self._http_port}"

    @property
    def traces_url(self) -> str:
        """Full traces URL for ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / the HTTP exporter."""
        return self.endpoint + TRACES_PATH

    @property
    def logs_url(self) -> str:
        """Full logs URL for ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``."""
        return self.endpoint + LOGS_PATH

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the OTel gRPC exporter reads the ``http`` scheme as insecure."""
        return f"http://{self.grpc_address}"

    @property
    def grpc_address(self) -> str:
        """``127.0.0.1:PORT`` for ``grpc.insecure_channel``."""
        if not self._grpc_enabled:
            raise RuntimeError("this OtlpReceiver was created with grpc_enabled=False")
        return f"127.0.0.1:{self._grpc_port}"

    # -- results ----------------------------------------------------------------------------------

    def spans(self) -> list[Span]:
        """All spans received so far, in arrival order."""
        with self._cond:
            return list(self._spans)

    def logs(self) -> list[Log]:
        """All log records received so far, in arrival order."""
        with self._cond:
            return list(self._logs)

    def wait_for_logs(self, n: int, timeout: float = 5.0) -> list[Log]:
        """Wait until at least ``n`` log records arrived."""
        self._wait(lambda: len(self._logs) >= n, timeout, f"{n} log records")
        return self.logs()

    def requests(self) -> list[Request]:
        """All export calls so far, accepted or failed by a fault switch."""
        with self._cond:
            return list(self._requests)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Span]:
        """Wait until at least ``n`` spans arrived; return them all or fail the test saying what came."""
        self._wait(lambda: len(self._spans) >= n, timeout, f"{n} spans")
        return self.spans()

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[Request]:
        """Wait until at least ``n`` export calls (also failed ones) arrived."""
        self._wait(lambda: len(self._requests) >= n, timeout, f"{n} export requests")
        return self.requests()

    def clear(self) -> None:
        """Forget received spans and requests (fault switches are kept)."""
        with self._cond:
            self._spans.clear()
            self._logs.clear()
            self._requests.clear()

    # -- SigV4 keys (with ``sigv4=``) -------------------------------------------------------------

    def accept_key(self, access_key: str, secret: str) -> None:
        """Accept requests signed with this key from now on (credentials just issued)."""
        with self._cond:
            if self._keys is None:
                raise RuntimeError("this OtlpReceiver does not check SigV4: pass sigv4={...}")
            self._keys[access_key] = secret

    def revoke_key(self, access_key: str) -> None:
        """Answer 403 ``ExpiredTokenException`` to requests signed with this key (expired credentials)."""
        with self._cond:
            if self._keys is not None:
                self._keys.pop(access_key, None)

    # -- fault switches ---------------------------------------------------------------------------

    def fail(self, status: int = 503, times: int | None = None, retry_after: float | None = None) -> None:
        """Answer the next ``times`` calls (all while None) with ``status`` and keep no spans.

        gRPC gets the matching status code (503 -> UNAVAILABLE, 400 -> INVALID_ARGUMENT, ...).
        ``retry_after`` adds an HTTP ``Retry-After`` header so exporter retries stay fast.
        """
        if status not in _GRPC_CODES:
            raise ValueError(f"status {status} not supported; use one of {sorted(_GRPC_CODES)}")
        with self._cond:
            self._fault = _Fault(status, times, retry_after)

    def heal(self) -> None:
        """Accept calls again after ``fail``."""
        with self._cond:
            self._fault = None

    # -- internals --------------------------------------------------------------------------------

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [s["name"] for s in self._spans]
                    raise AssertionError(
                        f"OTLP receiver: expected {what} within {timeout}s; got "
                        f"{len(self._requests)} requests, spans {names}"
                    )
                self._cond.wait(left)

    def _take_fault(self) -> _Fault | None:
        with self._cond:
            fault = self._fault
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault

    def _accept(
        self,
        meta: tuple[str, dict[str, str], str, str],
        parse: Callable[[], Any],
        path: str = TRACES_PATH,
        check: dict[str, Any] | None = None,
        body_size: int = 0,
    ) -> tuple[int, _Fault | None]:
        """Apply a fault or decode the request; record the call; return (status, fault).

        ``check``: the SigV4 verdict (``_check_sigv4``); a request that fails it gets 403.
        """
        transport, headers, content_type, encoding = meta
        check = check or {}
        fault = None if check.get("sigv4", "valid") != "valid" else self._take_fault()
        spans: list[Span] = []
        logs: list[Log] = []
        status = 403 if check.get("sigv4", "valid") != "valid" else fault.status if fault else 200
        if status == 200:
            try:
                decoded = parse()
                if path == LOGS_PATH:
                    logs = decode_logs(decoded)
                else:
                    spans = decode_request(decoded)
            except Exception:
                status = 400
        with self._cond:
            self._spans.extend(spans)
            self._logs.extend(logs)
            self._requests.append(Request(transport, headers, content_type, encoding, status, len(spans),
                                          path, len(logs), **check, body_size=body_size))
            self._cond.notify_all()
        return status, fault

    def _check_sigv4(self, url: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """The SigV4 verdict on one request, recomputed with botocore (empty without ``sigv4=``)."""
        from support.sigv4 import authorization, expected_signature

        with self._cond:
            keys = None if self._keys is None else dict(self._keys)
        if keys is None:
            return {}
        auth = authorization(headers)
        if auth is None:
            return {"sigv4": "missing"}
        found = {"access_key": auth.access_key, "service": auth.service, "region": auth.region,
                 "signed_headers": auth.signed_headers}
        secret = keys.get(auth.access_key)
        if secret is None:
            return {"sigv4": "unknown_key", **found}
        ok = expected_signature(url, headers, body, secret) == auth.signature
        return {"sigv4": "valid" if ok else "mismatch", **found}


# -- decoding -------------------------------------------------------------------------------------


def decode_request(request: trace_service_pb2.ExportTraceServiceRequest) -> list[Span]:
    """Flatten an ExportTraceServiceRequest into simple span dicts."""
    result: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = {"name": scope_spans.scope.name, "version": scope_spans.scope.version}
            result.extend(_span(s, resource, scope) for s in scope_spans.spans)
    return result


def attributes(items: Any) -> dict[str, Any]:
    """Repeated KeyValue -> ``{key: python value}``."""
    return {kv.key: _value(kv.value) for kv in items}


def _value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, which)


def _span(span: trace_pb2.Span, resource: dict[str, Any], scope: dict[str, str]) -> Span:
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "trace_state": span.trace_state,
        "flags": span.flags,
        "name": span.name,
        "kind": trace_pb2.Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": attributes(e.attributes)}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": ln.trace_id.hex(),
                "span_id": ln.span_id.hex(),
                "attributes": attributes(ln.attributes),
            }
            for ln in span.links
        ],
        "status": {
            "code": trace_pb2.Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
            "message": span.status.message,
        },
        "resource": resource,
        "scope": scope,
    }


def decode_logs(request: logs_service_pb2.ExportLogsServiceRequest) -> list[Log]:
    """Flatten an ExportLogsServiceRequest into simple log dicts."""
    result: list[Log] = []
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = {"name": scope_logs.scope.name}
            result.extend(
                {
                    "trace_id": record.trace_id.hex() or None,
                    "span_id": record.span_id.hex() or None,
                    "body": _value(record.body),
                    "severity_text": record.severity_text,
                    "severity_number": int(record.severity_number),
                    "time_unix_nano": record.time_unix_nano,
                    "attributes": attributes(record.attributes),
                    "resource": resource,
                    "scope": scope,
                }
                for record in scope_logs.log_records
            )
    return result


def parse_json(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    """OTLP/JSON: like the protobuf JSON mapping, except that ids are hex instead of base64."""
    data = json.loads(body)
    _hex_ids_to_base64(data)
    return json_format.Parse(json.dumps(data), trace_service_pb2.ExportTraceServiceRequest())


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    elif isinstance(node, dict):
        for key, val in node.items():
            if key in _ID_KEYS and isinstance(val, str):
                node[key] = base64.b64encode(bytes.fromhex(val)).decode()
            else:
                _hex_ids_to_base64(val)


def _parse_protobuf(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    return trace_service_pb2.ExportTraceServiceRequest.FromString(body)


def _decompress(encoding: str, body: bytes) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "identity":
        return body
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


# -- transports -----------------------------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], rx: OtlpReceiver) -> None:
        self.receiver = rx
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.partition("?")[0]
        if path not in (TRACES_PATH, LOGS_PATH):
            self._reply(404, b"", "text/plain")
            return
        content_type = (self.headers.get("Content-Type") or PROTOBUF).split(";")[0].strip()
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        is_json = content_type == JSON
        headers = {k.lower(): v for k, v in self.headers.items()}
        is_logs = path == LOGS_PATH
        if is_logs and is_json:
            self._reply(415, b"", "text/plain")
            return

        def parse() -> Any:
            raw = _decompress(encoding, body)
            if is_logs:
                return logs_service_pb2.ExportLogsServiceRequest.FromString(raw)
            return parse_json(raw) if is_json else _parse_protobuf(raw)

        receiver = self.server.receiver
        check = receiver._check_sigv4(f"http://{self.headers.get('Host')}{self.path}", headers, body)
        meta = ("http", headers, content_type, encoding)
        try:
            size = len(_decompress(encoding, body))
        except (ValueError, OSError, zlib.error):
            size = 0  # parse() answers 400
        status, fault = receiver._accept(meta, parse, path, check, size)
        extra = {}
        if fault is not None and fault.retry_after is not None:
            extra["Retry-After"] = f"{fault.retry_after:g}"
        if status != 200:
            payload, error_type = _aws_error(status, check, headers.get("x-amz-security-token", ""))
            self._reply(status, payload, JSON, {**extra, "x-amzn-ErrorType": error_type})
            return
        response: Any = (
            logs_service_pb2.ExportLogsServiceResponse() if is_logs
            else trace_service_pb2.ExportTraceServiceResponse()
        )
        payload = json_format.MessageToJson(response).encode() if is_json else response.SerializeToString()
        self._reply(status, payload, content_type, extra)

    def _reply(
        self, status: int, payload: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, val in (extra or {}).items():
            self.send_header(key, val)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""


def _aws_error(status: int, check: dict[str, Any], token: str) -> tuple[bytes, str]:
    """An error answer as AWS writes it: JSON with ``message``, the type in ``x-amzn-ErrorType``.

    A signature mismatch quotes the canonical request, security token included, as AWS does: the
    client must not log it.
    """
    kind = check.get("sigv4", "valid")
    if kind == "missing":
        error = ("MissingAuthenticationTokenException", "Missing Authentication Token")
    elif kind == "unknown_key":
        error = ("ExpiredTokenException", "The security token included in the request is expired")
    elif kind == "mismatch":
        error = ("InvalidSignatureException", "The request signature we calculated does not match the "
                 "signature you provided.\n\nThe Canonical String for this request should have been\n"
                 f"'x-amz-security-token:{token}'")
    else:
        error = _AWS_ERRORS.get(status, ("InternalFailure", f"HTTP {status}"))
    return json.dumps({"message": error[1]}).encode(), f"{error[0]}:http://internal.amazon.com/coral/"


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        headers = {k.lower(): str(v) for k, v in context.invocation_metadata()}
        meta = ("grpc", headers, "application/grpc", "unknown")
        status, _ = self._receiver._accept(meta, lambda: request)
        if status != 200:
            context.abort(_GRPC_CODES[status], f"OTLP receiver fault switch: {status}")
        return trace_service_pb2.ExportTraceServiceResponse()
