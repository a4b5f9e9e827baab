"""tracekit.logs over OTLP: which settings turn it on, CloudWatch's headers, failures contained.

The ids, signatures and Lambda flushing are checked end to end in tests/core/test_aws_otlp.py and
tests/lambda/test_handler.py; these tests cover the logs side's own choices.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

import tracekit.logs as logs
from support.otlp_receiver import OtlpReceiver
from tracekit._shared import stats as _stats
from tracekit._shared.settings import ConfigError
from tracekit.logs import otlp

CLOUDWATCH = "https://logs.us-east-1.amazonaws.com/v1/logs"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    _stats.reset()
    with OtlpReceiver(grpc_enabled=False) as rx:
        yield rx
    logs.configure(stdlib=False, otlp=False)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_which_settings_export_over_otlp() -> None:
    assert otlp.exporters_from({}, None, None) == ("stdout",)
    assert otlp.exporters_from({"OTEL_LOGS_EXPORTER": "otlp"}, None, None) == ("stdout", "otlp")
    assert otlp.exporters_from({"TRACEKIT_LOGS_EXPORTERS": "otlp"}, None, None) == ("otlp",)
    assert otlp.exporters_from({"TRACEKIT_LOGS_EXPORTERS": "otlp"}, None, False) == ("stdout",)
    assert otlp.exporters_from({}, None, True) == ("stdout", "otlp")
    assert otlp.exporters_from({}, "console,otlp", None) == ("stdout", "otlp")
    with pytest.raises(ConfigError, match=r"TRACEKIT_LOGS_EXPORTERS='cloudwatch' is not valid: expected a"):
        otlp.exporters_from({"TRACEKIT_LOGS_EXPORTERS": "cloudwatch"}, None, None)


def test_cloudwatch_needs_the_log_group_and_stream_headers() -> None:
    env = {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": CLOUDWATCH,
           "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-aws-log-group=orders,authorization=Bearer s3cret"}
    with pytest.raises(ConfigError) as err:
        otlp.target_from(env)
    message = str(err.value)
    assert message.startswith("OTEL_EXPORTER_OTLP_LOGS_HEADERS='x-aws-log-group=***,authorization=***'")
    assert "x-aws-log-stream" in message and "s3cret" not in message
    env["OTEL_EXPORTER_OTLP_LOGS_HEADERS"] += ",x-aws-log-stream=web-1"
    target = otlp.target_from(env)
    assert (target.endpoint, target.headers["x-aws-log-stream"]) == (CLOUDWATCH, "web-1")
    assert target.sigv4 == "auto"
    base = otlp.target_from({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert base.endpoint == "http://collector:4318/v1/logs"


def test_a_bad_otlp_setting_in_the_environment_keeps_the_stdout_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Configured on first use from the environment: the error is reported once, the lines stay."""
    monkeypatch.setattr(logs, "_config", None)
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", CLOUDWATCH)
    _stats.reset()
    logs.get_logger("app").info("still here")
    assert json.loads(capsys.readouterr().out)["message"] == "still here"
    assert _stats.stats()["errors.logs.configure"] == 1
    assert logs._pipeline is None


def test_stdout_only_by_default_without_the_sdk_logs_pipeline() -> None:
    code = (
        "import sys, tracekit.logs as logs\n"
        "logs.get_logger('app').info('hi')\n"
        "names = ('opentelemetry.sdk._logs', 'opentelemetry.exporter')\n"
        "print(any(m.startswith(names) for m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin"})
    first, second = result.stdout.splitlines()
    assert json.loads(first)["message"] == "hi" and second == "False", result.stderr


def test_rejected_and_throttled_batches_are_counted_and_never_reach_the_caller(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    logs.configure(stream=out, env={"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": receiver.logs_url}, otlp=True)
    receiver.fail(403, times=1)
    logging.getLogger("app").warning("refused")  # through the stdlib handler too
    assert logs.flush(5)
    receiver.fail(429, times=1, retry_after=0.05)
    logging.getLogger("app").warning("throttled, then delivered")
    logging.getLogger("opentelemetry.exporter.otlp").error("export failed")  # stays off OTLP
    logging.getLogger("tracekit").warning("tracekit: logs.otlp export failed")
    assert logs.flush(5)
    counts = _stats.stats()
    assert counts["errors.logs.otlp.forbidden"] == 1
    assert counts["errors.logs.otlp.throttled"] == 1
    assert counts["logs.otlp.retries"] == 1
    assert (counts["logs.otlp.records_failed"], counts["logs.otlp.records_exported"]) == (1, 1)
    assert [r["body"] for r in receiver.logs()] == ["throttled, then delivered"]
    assert [r.status for r in receiver.requests()] == [403, 429, 200]
    written = {json.loads(line)["message"] for line in out.getvalue().splitlines()}
    assert {"export failed", "tracekit: logs.otlp export failed"} <= written  # on stdout only


def test_buffered_debug_lines_released_by_an_error_are_exported_with_their_own_time(
    receiver: OtlpReceiver,
) -> None:
    logs.configure(stdlib=False, buffer_debug=True, stream=io.StringIO(), otlp=True,
                   env={"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": receiver.logs_url})
    log = logs.get_logger("app")
    with logs.request_scope(request="r1"):
        log.debug("step 1")
        log.error("failed", code=7)
    assert logs.flush(5)
    records = receiver.wait_for_logs(2)
    assert [(r["body"], r["severity_text"]) for r in records] == [("step 1", "DEBUG"), ("failed", "ERROR")]
    assert records[0]["time_unix_nano"] <= records[1]["time_unix_nano"]
    assert records[1]["attributes"] == {"logger": "app", "service": records[1]["attributes"]["service"],
                                        "request": "r1", "code": 7}


def test_without_the_otlp_exporter_the_lines_stay_on_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --slim Lambda layer has no OTLP exporter: asking for OTLP logs there costs no line."""
    monkeypatch.setitem(sys.modules, "tracekit.logs.otlp_export", None)  # import fails
    with pytest.raises(ConfigError, match="TRACEKIT_LOGS_EXPORTERS='otlp' is not valid: expected stdout"):
        logs.configure(stdlib=False, env={"TRACEKIT_LOGS_EXPORTERS": "otlp"})
    monkeypatch.setattr(logs, "_config", None)
    monkeypatch.setenv("TRACEKIT_LOGS_EXPORTERS", "otlp")
    _stats.reset()
    logs.get_logger("app").info("kept")
    assert json.loads(capsys.readouterr().out)["message"] == "kept"
    assert _stats.stats()["errors.logs.configure"] == 1


def test_records_over_the_queue_limit_are_dropped_and_counted(receiver: OtlpReceiver) -> None:
    from tracekit.logs.otlp_export import Pipeline

    pipeline = Pipeline(otlp.Target(receiver.logs_url), "svc", max_queue=3)
    try:
        for n in range(5):  # the batch worker sleeps until a batch is full or flushed
            pipeline.emit({"timestamp": "2026-12-03T08:00:00.000Z", "level": "info", "message": f"m{n}",
                           "logger": "app"})
        assert _stats.stats()["logs.otlp.dropped.buffer_full"] == 2
        assert pipeline.flush(5)
        assert sorted(r["body"] for r in receiver.wait_for_logs(3)) == ["m0", "m1", "m2"]
        pipeline.emit({"level": "info", "message": "room again", "logger": "app"})  # no timestamp: now
        assert pipeline.flush(5)
        assert receiver.wait_for_logs(4)[-1]["body"] == "room again"
    finally:
        pipeline.shutdown()


def _configure(receiver: OtlpReceiver, **env: str) -> None:
    logs.configure(stdlib=False, stream=io.StringIO(), otlp=True,
                   env={"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": receiver.logs_url, **env})


def test_batches_are_split_so_no_request_exceeds_cloudwatchs_1_mib(receiver: OtlpReceiver) -> None:
    """300 records of 10 KB: one count-cut batch of 256 would be a 2.6 MB request."""
    _configure(receiver)
    log = logs.get_logger("app")
    for n in range(300):
        log.info(f"{n:03d} " + "x" * 10_000, order=n)
    assert logs.flush(10)
    records = receiver.wait_for_logs(300)
    assert sorted(r["attributes"]["order"] for r in records) == list(range(300))
    sizes = [r.body_size for r in receiver.requests()]
    assert all(r.status == 200 for r in receiver.requests())
    assert max(sizes) <= otlp.MAX_REQUEST_BYTES < sum(sizes), sizes
    assert max(sizes) > 0.9 * otlp.MAX_REQUEST_BYTES  # batches are not cut far below the limit


def test_a_configured_request_limit_holds_for_any_mix_of_records(receiver: OtlpReceiver) -> None:
    import random

    _configure(receiver, TRACEKIT_OTLP_LOGS_MAX_REQUEST_BYTES="8192")
    log = logs.get_logger("app")
    rng = random.Random(7)
    sent = []
    for n in range(150):
        text = "".join(rng.choice("ab é€😀") for _ in range(rng.randrange(0, 1500)))
        fields = {"order": n, "tags": ["t"] * rng.randrange(5), "cart": {"items": rng.randrange(9)},
                  "price": rng.random(), "ok": n % 2 == 0}  # fmt: skip
        log.warning(text, **fields)
        sent.append(text)
    assert logs.flush(10)
    records = receiver.wait_for_logs(150)
    assert sorted(r["body"] for r in records) == sorted(sent)
    sizes = [r.body_size for r in receiver.requests()]
    assert max(sizes) <= 8192 and len(sizes) > 10, sizes
    assert sum(sizes) / len(sizes) > 8192 / 2, sizes
    assert "logs.otlp.truncated" not in _stats.stats()


def test_a_record_over_the_limit_is_cut_to_fit_or_dropped_and_counted(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    _configure(receiver, TRACEKIT_OTLP_LOGS_MAX_REQUEST_BYTES="8192")
    log = logs.get_logger("app")
    log.error("é" * 20_000, order=1)  # 40 KB of message: cut at a character boundary
    log.error("small", order=2, blob="z" * 20_000)  # over the limit without its body: dropped
    log.error("after", order=3)
    assert logs.flush(10)
    records = receiver.wait_for_logs(2)
    assert [r["attributes"]["order"] for r in records] == [1, 3]
    assert set(records[0]["body"]) == {"é"} and 3000 < len(records[0]["body"]) < 4096
    assert all(r.body_size <= 8192 for r in receiver.requests())
    counts = _stats.stats()
    assert counts["logs.otlp.truncated"] == counts["logs.otlp.dropped.too_large"] == 1
    warned = [r.getMessage() for r in caplog.records if "request limit" in r.getMessage()]
    assert len(warned) == 2 and "8192-byte" in warned[0], warned


def test_the_request_limit_setting_is_checked() -> None:
    assert otlp.target_from({}).max_request_bytes == 1_048_576
    env = {"TRACEKIT_OTLP_LOGS_MAX_REQUEST_BYTES": "65536"}
    assert otlp.target_from(env).max_request_bytes == 65536
    for bad in ("1MB", "0", "100"):
        with pytest.raises(ConfigError, match=f"TRACEKIT_OTLP_LOGS_MAX_REQUEST_BYTES='{bad}' is not valid"):
            otlp.target_from({"TRACEKIT_OTLP_LOGS_MAX_REQUEST_BYTES": bad})
