"""tracekit.flask on the real Flask: test client, and a real werkzeug server over loopback."""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask, Response, abort, stream_with_context
from flask.testing import FlaskClient
from web_helpers import SERVICE, Traced, serve_in_thread
from werkzeug.serving import make_server

import tracekit
import tracekit.flask
from tracekit import ConfigError
from tracekit._shared import stats as _stats
from tracekit.tracing import provider

INBOUND_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
INBOUND_PARENT = "53995c3f42cd8ad8"


class Client(FlaskClient):
    """Buffered, like a real server: the body is consumed and closed, which ends the span."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def make_app(**options: Any) -> Flask:
    app = Flask("shop")
    app.test_client_class = Client

    @app.get("/orders/<order_id>")
    def order(order_id: str) -> Any:
        with tracekit.span("load-order"):
            return {"id": order_id}

    @app.get("/status/<int:code>")
    def status(code: int) -> Any:
        abort(code)

    @app.get("/boom")
    def boom() -> Any:
        raise ValueError("card declined")

    @app.get("/fanout")
    def fanout() -> Any:
        def work(n: int) -> int:
            with tracekit.span(f"work-{n}"):
                return n * 2

        with ThreadPoolExecutor(2) as pool:
            return {"results": list(pool.map(work, [1, 2, 3]))}

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for i in range(3):
                with tracekit.span(f"chunk-{i}"):
                    yield f"part{i};"

        return Response(stream_with_context(chunks()), mimetype="text/plain")

    @app.get("/healthz")
    def health() -> str:
        with tracekit.span("probe-db"):
            return "ok"

    return tracekit.flask.instrument(app, **options)


def test_segment_is_named_by_route_template_with_http_request_and_response(traced: Traced) -> None:
    client = make_app().test_client()
    response = client.get(
        "/orders/42?q=1",
        headers={"User-Agent": "pytest-agent"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert response.status_code == 200
    doc = traced.segment()
    assert doc["name"] == SERVICE
    assert doc["http"]["request"] == {
        "method": "GET",
        "url": "http://localhost/orders/42?q=1",
        "user_agent": "pytest-agent",
        "client_ip": "10.1.2.3",
    }
    assert doc["http"]["response"] == {"status": 200, "content_length": len(response.data)}
    assert not {"error", "fault", "throttle"} & doc.keys()
    assert [s["name"] for s in doc["subsegments"]] == ["load-order"]
    [server] = traced.server_spans()
    assert server.name == "/orders/<order_id>"
    assert server.attributes is not None and server.attributes["http.route"] == "/orders/<order_id>"
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={doc['trace_id']}"


def test_route_template_reaches_the_segment_as_an_annotation(traced: Traced) -> None:
    make_app().test_client().get("/orders/42")
    doc = traced.segment()
    assert doc["name"] == SERVICE
    assert doc["annotations"]["http_route"] == "/orders/<order_id>"


def test_forwarded_for_names_the_client(traced: Traced) -> None:
    make_app().test_client().get("/orders/1", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
    request = traced.segment()["http"]["request"]
    assert request["client_ip"] == "203.0.113.9"
    assert request["x_forwarded_for"] is True


@pytest.mark.parametrize(
    ("code", "flags"),
    [(404, {"error"}), (429, {"error", "throttle"}), (503, {"fault"})],
)
def test_status_codes_map_to_error_throttle_fault(
    traced: Traced, code: int, flags: set[str]
) -> None:
    assert make_app().test_client().get(f"/status/{code}").status_code == code
    doc = traced.segment()
    assert {k for k in ("error", "throttle", "fault") if doc.get(k)} == flags
    assert doc["http"]["response"]["status"] == code
    assert "cause" not in doc


def test_unhandled_exception_gives_500_to_client_and_fault_with_cause(traced: Traced) -> None:
    response = make_app().test_client().get("/boom")
    assert response.status_code == 500
    assert response.headers["X-Amzn-Trace-Id"].startswith("Root=1-")
    doc = traced.segment()
    assert doc["fault"] is True and doc["http"]["response"]["status"] == 500
    [exc] = doc["cause"]["exceptions"]
    assert (exc["type"], exc["message"]) == ("ValueError", "card declined")
    assert exc["stack"][0]["label"] == "boom"


def test_propagated_exception_in_testing_mode_is_recorded_once(traced: Traced) -> None:
    app = make_app()
    app.testing = True  # Flask re-raises instead of rendering a 500
    with pytest.raises(ValueError, match="card declined"):
        app.test_client().get("/boom")
    doc = traced.segment()
    assert doc["fault"] is True and len(doc["cause"]["exceptions"]) == 1


def test_xray_header_continues_the_trace_and_answers_sampled_request(traced: Traced) -> None:
    header = f"Root={INBOUND_ROOT};Parent={INBOUND_PARENT};Sampled=?"
    response = make_app().test_client().get("/orders/7", headers={"X-Amzn-Trace-Id": header})
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={INBOUND_ROOT};Sampled=1"
    doc = traced.segment()
    assert (doc["trace_id"], doc["parent_id"]) == (INBOUND_ROOT, INBOUND_PARENT)


def test_w3c_traceparent_continues_the_trace(traced: Traced) -> None:
    trace_hex = "5759e988bd862e3fe1be46a994272793"
    parent = f"00-{trace_hex}-{INBOUND_PARENT}-01"
    make_app().test_client().get("/orders/7", headers={"traceparent": parent})
    doc = traced.segment()
    assert (doc["trace_id"], doc["parent_id"]) == (INBOUND_ROOT, INBOUND_PARENT)


def test_caller_decision_not_sampled_emits_nothing(traced: Traced) -> None:
    client = make_app().test_client()
    header = f"Root={INBOUND_ROOT};Parent={INBOUND_PARENT};Sampled=0"
    response = client.get("/orders/7", headers={"X-Amzn-Trace-Id": header})
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={INBOUND_ROOT}"
    client.get("/orders/8")  # sampled: the only document to arrive
    assert traced.segment()["trace_id"] != INBOUND_ROOT


def test_thread_fan_out_keeps_one_trace_with_the_request_as_parent(traced: Traced) -> None:
    make_app().test_client().get("/fanout")
    doc = traced.segment()
    assert sorted(s["name"] for s in doc["subsegments"]) == ["work-1", "work-2", "work-3"]


def test_streamed_body_is_covered_counted_and_parents_its_spans(traced: Traced) -> None:
    response = make_app().test_client().get("/stream")
    assert response.data == b"part0;part1;part2;"
    doc = traced.segment()
    assert doc["http"]["response"]["content_length"] == len(b"part0;part1;part2;")
    children = doc["subsegments"]
    assert [s["name"] for s in children] == ["chunk-0", "chunk-1", "chunk-2"]
    assert all(s["end_time"] <= doc["end_time"] for s in children)


def test_plain_test_client_ends_each_span_without_closing_the_response(traced: Traced) -> None:
    app = make_app()
    app.test_client_class = FlaskClient  # unbuffered, responses never closed: as most tests use it
    client = app.test_client()
    responses = [client.get(f"/orders/{n}") for n in range(3)]
    assert all(r.status_code == 200 for r in responses)
    assert len(traced.server_spans()) == 3  # ended before the client returned, not at exit
    docs = traced.documents(3)
    assert sorted(d["http"]["response"]["content_length"] for d in docs) == sorted(
        len(r.data) for r in responses
    )


def test_plain_test_client_streamed_body_ends_the_span_when_it_is_read(traced: Traced) -> None:
    app = make_app()
    app.test_client_class = FlaskClient
    response = app.test_client().get("/stream")
    assert traced.server_spans() == []  # the body is still being produced
    assert response.data == b"part0;part1;part2;"
    doc = traced.segment()
    assert doc["http"]["response"]["content_length"] == len(response.data)
    assert [s["name"] for s in doc["subsegments"]] == ["chunk-0", "chunk-1", "chunk-2"]
    assert all(s["end_time"] <= doc["end_time"] for s in doc["subsegments"])


def test_health_checks_are_excluded_by_default_with_what_they_call(traced: Traced) -> None:
    client = make_app().test_client()
    response = client.get("/healthz")
    assert response.status_code == 200 and "X-Amzn-Trace-Id" not in response.headers
    client.get("/orders/1")
    assert traced.segment()["http"]["request"]["url"].endswith("/orders/1")
    assert [s.name for s in traced.exporter.get_finished_spans()] == [
        "load-order",
        "/orders/<order_id>",
    ]


def test_excluded_urls_from_the_flask_variable_then_the_generic_one(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "orders/1$")
    monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "orders/2$,status")
    client = make_app().test_client()
    for path in ("/orders/2", "/status/404", "/orders/1", "/healthz"):
        client.get(path)
    traced_urls = sorted(s.attributes["url.full"] for s in traced.server_spans())  # type: ignore[index]
    assert traced_urls == ["http://localhost/healthz", "http://localhost/orders/1"]
    monkeypatch.delenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS")
    make_app().test_client().get("/orders/1")
    assert len(traced.server_spans()) == 2  # now excluded by OTEL_PYTHON_EXCLUDED_URLS


def test_excluded_urls_argument_wins_and_bad_patterns_are_named(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "orders")
    client = make_app(excluded_urls=["/status/"]).test_client()
    client.get("/orders/3")
    client.get("/status/404")
    assert [s.name for s in traced.server_spans()] == ["/orders/<order_id>"]
    with pytest.raises(ConfigError, match=r"excluded_urls=.*\(\[unclosed.*regular expressions"):
        make_app(excluded_urls="([unclosed")
    monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "*bad")
    with pytest.raises(ConfigError, match="OTEL_PYTHON_FLASK_EXCLUDED_URLS"):
        make_app()


def test_sensitive_headers_and_query_values_never_leave_the_process(traced: Traced) -> None:
    client = make_app(capture_headers=["X-Request-Id"]).test_client()
    client.get(
        "/orders/5?api_key=SECRET-QUERY&page=2",
        headers={
            "Authorization": "Bearer SECRET-AUTH",
            "Cookie": "session=SECRET-COOKIE",
            "X-Api-Key": "SECRET-KEY",
            "X-Request-Id": "req-123",
        },
    )
    doc = traced.segment()
    assert doc["metadata"]["default"]["http.request.header.x-request-id"] == ["req-123"]
    assert doc["http"]["request"]["url"].endswith("/orders/5?api_key=[REDACTED]&page=2")
    sent = b"".join(traced.daemon.datagrams())
    for secret in (b"SECRET-QUERY", b"SECRET-AUTH", b"SECRET-COOKIE", b"SECRET-KEY"):
        assert secret not in sent
    with pytest.raises(ConfigError, match=r"capture_headers=.*authorization.*not sensitive"):
        make_app(capture_headers=["Authorization"])


def test_instrument_twice_traces_once(traced: Traced) -> None:
    app = make_app()
    assert tracekit.flask.instrument(app) is app
    app.test_client().get("/orders/1")
    assert len(traced.server_spans()) == 1


def test_instrument_again_with_other_options_warns_once_in_one_line(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    with caplog.at_level(logging.WARNING, logger="tracekit"):
        assert tracekit.flask.instrument(app) is app  # the same options: nothing to say
        assert not caplog.records
        tracekit.flask.instrument(app, capture_headers=["X-Tenant"], record_metrics=False)
        tracekit.flask.instrument(app, capture_headers=["X-Tenant"], record_metrics=False)
    [message] = [r.getMessage() for r in caplog.records if r.name == "tracekit"]
    assert "\n" not in message and "already instrumented" in message
    assert "capture_headers" in message and "record_metrics" in message and "excluded_urls" not in message
    assert _stats.stats()["flask.reinstrumented"] == 2


def test_red_metrics_hook_gets_route_template_method_status(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, int, float]] = []
    monkeypatch.setattr("tracekit.metrics.record_request", lambda *args: calls.append(args))
    client = make_app().test_client()
    client.get("/orders/9")
    client.get("/nowhere")
    assert [c[:3] for c in calls] == [("/orders/<order_id>", "GET", 200), ("UNMATCHED", "GET", 404)]
    assert all(0 <= c[3] < 5000 for c in calls)


def test_debug_logs_of_a_failed_request_are_written_with_its_trace_id(traced: Traced) -> None:
    import tracekit.logs

    out = io.StringIO()
    tracekit.logs.configure("INFO", stream=out, stdlib=False, buffer_debug=True)
    try:
        app = make_app()

        @app.get("/debug/<int:fail>")
        def debug(fail: int) -> str:
            tracekit.logs.get_logger("shop").debug("looking", fail=fail)
            if fail:
                raise KeyError("missing")
            return "fine"

        client = app.test_client()
        client.get("/debug/0")
        assert out.getvalue() == ""  # buffered, then dropped: the request went well
        client.get("/debug/1")
    finally:
        tracekit.logs.configure(stdlib=False)
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert (line["message"], line["fail"]) == ("looking", 1)
    assert line["xray_trace_id"] == traced.documents(2)[1]["trace_id"]


def test_tracing_failures_never_reach_the_application(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_app().test_client()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(provider, "get_tracer", broken)
    assert client.get("/orders/1").status_code == 200
    assert _stats.stats()["errors.web.start"] == 1
    monkeypatch.undo()
    monkeypatch.setattr("opentelemetry.sdk.trace.Span.set_attributes", broken)
    response = client.get("/orders/2")
    assert response.status_code == 200 and response.json == {"id": "2"}
    assert _stats.stats()["errors.web.finish"] == 1


def test_disabled_tracing_passes_requests_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider.shutdown()
    try:
        response = make_app().test_client().get("/orders/1")
        assert response.status_code == 200 and "X-Amzn-Trace-Id" not in response.headers
    finally:
        provider.shutdown()


@pytest.fixture
def server_url() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    stop = serve_in_thread(server.serve_forever, server.shutdown)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        stop()


def test_real_werkzeug_server_over_loopback(traced: Traced, server_url: str) -> None:
    header = f"Root={INBOUND_ROOT};Parent={INBOUND_PARENT};Sampled=1"
    request = urllib.request.Request(f"{server_url}/orders/11", headers={"X-Amzn-Trace-Id": header})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response) == {"id": "11"}
        assert response.headers["X-Amzn-Trace-Id"] == f"Root={INBOUND_ROOT}"
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(f"{server_url}/boom", timeout=10)
    assert failed.value.code == 500
    assert failed.value.headers["X-Amzn-Trace-Id"].startswith("Root=1-")
    ok, fault = sorted(traced.documents(2), key=lambda d: "fault" in d)
    assert ok["trace_id"] == INBOUND_ROOT and ok["http"]["request"]["client_ip"] == "127.0.0.1"
    assert ok["http"]["request"]["url"] == f"{server_url}/orders/11"
    assert fault["fault"] is True and fault["cause"]["exceptions"][0]["type"] == "ValueError"
    assert fault["end_time"] <= time.time()


def test_request_finished_log_line_has_route_status_and_trace(traced: Traced) -> None:
    from tracekit import logs

    stream = io.StringIO()
    logs.configure(stream=stream, request_log=True, stdlib=False)
    try:
        response = make_app().test_client().get("/orders/42")
        assert response.status_code == 200
    finally:
        logs.configure(stdlib=False)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (finished,) = [line for line in lines if line.get("message") == "request finished"]
    assert (finished["route"], finished["method"], finished["status"]) == ("/orders/<order_id>",
                                                                        "GET", 200)
    trace_id = response.headers["X-Amzn-Trace-Id"].split(";")[0].removeprefix("Root=")
    assert finished["xray_trace_id"] == trace_id
