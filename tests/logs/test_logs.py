"""Structured logs: fields, correlation, stdlib records, redaction, debug sampling and buffering."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import tracekit.logs as logs
from tracekit._shared import stats as _stats
from tracekit._shared.settings import ConfigError
from tracekit.xray.ids import to_xray_trace_id

Lines = Callable[[], list[dict[str, Any]]]
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def lines() -> Iterator[Callable[..., Lines]]:
    """Configure logs into a StringIO; returns a function giving the parsed lines so far."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    _stats.reset()

    def setup(**options: Any) -> Lines:
        out = io.StringIO()
        logs.configure(stream=out, **{"service": "svc", "env": {}, **options})
        return lambda: [json.loads(line) for line in out.getvalue().splitlines()]

    yield setup
    logs.clear_context()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_one_json_object_per_line_with_the_standard_fields(lines: Callable[..., Lines]) -> None:
    read = lines()
    logs.get_logger("orders").info("placed", order_id=42, amount=9.5, when=object())
    (line,) = read()
    assert _TIMESTAMP.match(line["timestamp"])
    assert list(line)[:5] == ["timestamp", "level", "message", "logger", "service"]
    assert (line["level"], line["message"], line["logger"], line["service"]) == (
        "info", "placed", "orders", "svc",
    )  # fmt: skip
    assert line["order_id"] == 42 and line["amount"] == 9.5
    assert line["when"].startswith("<object object")  # not JSON-serialisable: str()
    assert "trace_id" not in line


def test_trace_correlation_fields(lines: Callable[..., Lines]) -> None:
    read = lines()
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("work") as span:
        logs.get_logger("a").warning("inside")
        logging.getLogger("library").warning("from stdlib %s", "too")
    context = span.get_span_context()
    for line in read():
        assert line["xray_trace_id"] == to_xray_trace_id(context.trace_id)
        assert line["trace_id"] == f"{context.trace_id:032x}"
        assert line["span_id"] == f"{context.span_id:016x}"
    assert read()[1]["message"] == "from stdlib too" and read()[1]["logger"] == "library"


def test_lambda_context_fields_are_per_context(lines: Callable[..., Lines]) -> None:
    read = lines()
    log = logs.get_logger("h")

    def invocation(request_id: str, barrier: threading.Barrier) -> None:
        logs.bind_context(request_id=request_id, function_name="fn", cold_start=request_id == "r0")
        barrier.wait()
        log.info("handled")

    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=invocation, args=(f"r{i}", barrier)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = sorted((line["request_id"], line["cold_start"]) for line in read())
    assert got == [("r0", True), ("r1", False), ("r2", False), ("r3", False)]
    assert all(line["function_name"] == "fn" for line in read())
    logs.bind_context(request_id="x")
    logs.clear_context()
    log.info("after")
    assert "request_id" not in read()[-1]
    with logs.request_scope(function_request_id="abc", cold_start=False):
        log.info("in scope")
    log.info("out of scope")
    assert read()[-2]["function_request_id"] == "abc" and read()[-2]["cold_start"] is False
    assert "function_request_id" not in read()[-1]


def test_exceptions_have_type_message_and_stack(lines: Callable[..., Lines]) -> None:
    read = lines()
    try:
        {}["missing"]
    except KeyError:
        logs.get_logger("a").exception("lookup failed")
        logging.getLogger("lib").exception("stdlib too")
    for line in read():
        assert line["level"] == "error"
        assert line["exception"]["type"] == "KeyError"
        assert line["exception"]["message"] == "'missing'"
        assert (
            'in test_exceptions_have_type_message_and_stack\n    {}["missing"]'
            in (line["exception"]["stack"])
        )


def test_stdlib_records_replace_root_handlers_and_keep_extras(
    lines: Callable[..., Lines],
) -> None:
    logging.getLogger().addHandler(logging.StreamHandler(io.StringIO()))
    read = lines(level="DEBUG")
    assert [type(h).__name__ for h in logging.getLogger().handlers] == ["TracekitHandler"]
    logging.getLogger("boto").debug("sent", extra={"bytes": 12, "authorization": "AWS4 secret"})
    (line,) = read()
    assert line["level"] == "debug" and line["bytes"] == 12
    assert line["authorization"] == "[REDACTED]"


def test_sensitive_keys_are_redacted_everywhere(lines: Callable[..., Lines]) -> None:
    read = lines(redact_keys=["ssn"], env={"TRACEKIT_REDACT_KEYS": "iban, pin_code"})
    logs.bind_context(session_token="abc")
    logs.get_logger("a").info(
        "login",
        password="hunter2",
        client_secret="s",
        Authorization="Bearer x",
        cookie="c",
        api_key="k",
        ssn="123",
        iban="DE00",
        user="bob",
        headers={"X-Api-Key": "k", "Accept": "json"},
        items=[{"token": "t"}],
    )
    (line,) = read()
    for key in ("password", "client_secret", "Authorization", "cookie", "api_key", "ssn", "iban"):
        assert line[key] == "[REDACTED]", key
    assert line["session_token"] == "[REDACTED]"
    assert line["headers"] == {"X-Api-Key": "[REDACTED]", "Accept": "json"}
    assert line["items"] == [{"token": "[REDACTED]"}]
    assert line["user"] == "bob"
    assert "hunter2" not in json.dumps(line)


def test_debug_buffer_written_only_when_the_request_fails(lines: Callable[..., Lines]) -> None:
    read = lines(buffer_debug=True)
    log = logs.get_logger("svc")
    log.debug("outside any request: dropped")
    with logs.request_scope():
        log.debug("ok request detail")
        log.info("ok request")
    assert [line["message"] for line in read()] == ["ok request"]
    with pytest.raises(RuntimeError), logs.request_scope():
        log.debug("step 1")
        log.debug("step 2")
        raise RuntimeError("x")
    logs.request_started()
    log.debug("5xx detail")
    logs.request_finished(error=True, status=503)  # no request line: request_log is off
    messages = [line["message"] for line in read()]
    assert messages == ["ok request", "step 1", "step 2", "5xx detail"]


def test_request_log_lines_carry_the_duration(lines: Callable[..., Lines]) -> None:
    read = lines(request_log=True)
    with logs.request_scope(function_request_id="r1") as state:
        state.fields.update(route="/orders/{id}", status=201)
    with logs.request_scope():
        pass
    logs.request_started()
    logs.request_finished(error=True, route="/pay", status=503, duration_ms=12.5)  # middleware
    first, second, third = read()
    assert first["message"] == "request finished" and first["route"] == "/orders/{id}"
    assert first["function_request_id"] == "r1" and first["error"] is False
    assert 0 <= first["duration_ms"] < 1000 and "route" not in second
    assert (third["route"], third["status"], third["duration_ms"], third["error"]) == (
        "/pay", 503, 12.5, True
    )  # fmt: skip


def test_error_log_releases_the_buffer_first(lines: Callable[..., Lines]) -> None:
    read = lines(buffer_debug=True, buffer_size=3)
    log = logs.get_logger("svc")
    with logs.request_scope():
        for i in range(5):
            log.debug(f"d{i}")
        log.error("failed")
    assert [line["message"] for line in read()] == ["d2", "d3", "d4", "failed"]
    assert _stats.stats()["logs.buffer.dropped"] == 2


def test_per_request_debug_sampling(lines: Callable[..., Lines]) -> None:
    read = lines(debug_sample_rate=1.0)
    log = logs.get_logger("svc")
    with logs.request_scope():
        log.debug("sampled")
    log.debug("not in a request")
    assert [line["message"] for line in read()] == ["sampled"]
    read = lines(debug_sample_rate=0.0)
    with logs.request_scope():
        logs.get_logger("svc").debug("never")
    assert read() == []


def test_level_and_rate_configuration_errors(lines: Callable[..., Lines]) -> None:
    read = lines(env={"LOG_LEVEL": "warning"})
    logs.get_logger("a").info("hidden")
    logs.get_logger("a").warning("shown")
    assert [line["message"] for line in read()] == ["shown"]
    with pytest.raises(ConfigError, match="LOG_LEVEL='loud' is not valid: expected DEBUG, INFO"):
        logs.configure(env={"LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="debug_sample_rate=2 is not valid"):
        logs.configure(debug_sample_rate=2, env={})


class _Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk full")


def test_a_broken_stream_never_reaches_the_caller(lines: Callable[..., Lines]) -> None:
    lines()
    logs.configure(stream=_Broken(), env={})
    logs.get_logger("a").info("lost")
    logging.getLogger("lib").warning("lost too")
    stats = _stats.stats()
    assert stats["errors.logs.write"] == 1
    assert stats["errors.logs.stdlib"] >= 1  # the record, then tracekit's own warnings about it


def test_a_logger_made_before_configure_follows_the_later_level(
    lines: Callable[..., Lines],
) -> None:
    logs.configure(env={}, stdlib=False)  # what a module-level get_logger() gets: INFO
    module_logger = logs.get_logger("mod")
    read = lines(level="DEBUG")
    module_logger.debug("now visible")
    assert [line["message"] for line in read()] == ["now visible"]
    assert module_logger.is_enabled_for(logging.DEBUG)
    read = lines(level="WARNING")
    module_logger.info("now hidden")
    module_logger.warning("shown")
    assert [line["message"] for line in read()] == ["shown"]
    assert module_logger.get_effective_level() == logging.WARNING


def test_values_that_are_not_json_keep_the_line_parseable(lines: Callable[..., Lines]) -> None:
    out = io.StringIO()
    logs.configure(stream=out, env={}, stdlib=False)
    cycle: dict[str, Any] = {"password": "hunter2"}
    cycle["self"] = cycle
    logs.get_logger("a").info("odd", nan=float("nan"), inf=[float("inf")], cycle=cycle, ok=1.5)
    text = out.getvalue()
    assert "NaN" not in text and "Infinity" not in text and "hunter2" not in text
    line = json.loads(text)
    assert line["nan"] == "nan" and line["inf"] == "[inf]" and line["ok"] == 1.5
    assert line["cycle"]["password"] == "[REDACTED]"
    assert "[TOO DEEP]" in json.dumps(line["cycle"])


def test_a_stdlib_record_with_bad_arguments_is_kept(lines: Callable[..., Lines]) -> None:
    read = lines()
    logging.getLogger("lib").warning("%d items", "three")
    (line,) = read()
    assert line["message"] == "%d items ('three',)" and line["logger"] == "lib"
    assert _stats.stats()["logs.stdlib.bad_format"] == 1


def test_stdlib_debug_records_join_the_buffer_when_their_logger_asks(
    lines: Callable[..., Lines],
) -> None:
    read = lines(buffer_debug=True)
    app_logger = logging.getLogger("myapp")
    app_logger.setLevel(logging.DEBUG)
    try:
        for fail in (False, True):
            expected = pytest.raises(ValueError) if fail else contextlib.nullcontext()
            with expected, logs.request_scope():
                logging.getLogger("myapp.db").debug("query %s", fail)
                logging.getLogger("chatty.library").debug("noise")  # root stays at INFO
                if fail:
                    raise ValueError("x")
    finally:
        app_logger.setLevel(logging.NOTSET)
    assert [(line["logger"], line["message"]) for line in read()] == [("myapp.db", "query True")]


def test_a_request_scope_exited_in_another_context_never_raises(
    lines: Callable[..., Lines],
) -> None:
    import contextvars

    read = lines(buffer_debug=True)
    scope = logs.request_scope(job="j1")
    entered = contextvars.copy_context()
    state = entered.run(scope.__enter__)
    state.error = True
    entered.run(logs.get_logger("a").debug, "detail")
    contextvars.copy_context().run(scope.__exit__, None, None, None)
    assert [line["message"] for line in read()] == ["detail"]
    assert _stats.stats()["logs.request_scope.other_context"] == 1


def test_a_child_forked_while_a_line_is_written_can_log(lines: Callable[..., Lines]) -> None:
    import os

    read = lines()
    with logs._write_lock:  # another thread of the parent is writing at the moment of the fork
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                logs.get_logger("child").info("from the child")
                code = 0
            finally:
                os._exit(code)
    status = _wait_child(pid, 10.0)
    assert status is not None, "the child hung on the write lock"
    assert os.WEXITSTATUS(status) == 0
    logs.get_logger("parent").info("parent too")
    assert [line["message"] for line in read()] == ["parent too"]  # the child wrote its own copy


def _wait_child(pid: int, timeout: float) -> int | None:
    """The child's exit status, or None (and the child killed) when it does not end in time."""
    import os
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None
