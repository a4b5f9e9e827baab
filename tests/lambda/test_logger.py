"""``tracekit.aws_lambda.get_logger``: the structlog logger's lines, without importing structlog."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tracekit
from tracekit import logs
from tracekit._shared import stats as _stats
from tracekit.aws_lambda import get_logger
from tracekit.tracing import provider


@pytest.fixture
def lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    stream = io.StringIO()
    logs.configure(level="DEBUG", service="orders", stream=stream, stdlib=False)

    def read() -> list[dict[str, Any]]:
        found = [json.loads(line) for line in stream.getvalue().splitlines()]
        stream.seek(0)
        stream.truncate()
        for line in found:
            del line["timestamp"]
        return found

    yield read
    logs.configure(stdlib=False)


def _calls(log: Any) -> None:
    """The same calls for both loggers."""
    log = log.bind(order_id=7, module="billing")
    log.info("placed %s items for %s", 3, "ann", total=9.5, password="hunter2")
    log.debug("detail", nested={"token": "abc", "n": [1, 2]})
    log.unbind("module").warning("slow")
    log.error("%(what)s failed", {"what": "charge"})
    try:
        raise ValueError("card declined")
    except ValueError:
        log.exception("charge failed")
    log.log(40, "by number")


def test_lines_are_those_of_the_structlog_logger(lines: Callable[[], list[dict[str, Any]]]) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    tracekit.configure(exporters="none", sampler=ALWAYS_ON)
    try:
        with tracekit.span("invocation"):
            _calls(tracekit.get_logger("app"))
            expected = lines()
            _calls(get_logger("app"))
            got = lines()
    finally:
        provider.shutdown()
    assert len(expected) == 6 and expected[0]["xray_trace_id"] and expected[0]["password"] != "hunter2"
    assert got == expected
    get_logger("app", a=1).new(only=1).info("fresh")
    fresh = lines()[0]
    assert fresh["only"] == 1 and "a" not in fresh


def test_async_forms_and_bad_arguments_never_raise(lines: Callable[[], list[dict[str, Any]]]) -> None:
    import asyncio

    _stats.reset()
    log = get_logger("app")
    asyncio.run(log.ainfo("from a coroutine", n=1))
    log.info("%d orders", "many")  # a bad %-argument loses nothing and raises nothing
    assert [(line["message"], line.get("n")) for line in lines()] == [
        ("from a coroutine", 1), ("%d orders ('many',)", None)
    ]
    assert _stats.stats()["logs.lambda.bad_format"] == 1
    with pytest.raises(KeyError):
        log.unbind("absent")


def test_the_lambda_path_with_this_logger_never_imports_structlog() -> None:
    code = (
        "import sys, types, tracekit\n"
        "from tracekit.aws_lambda import get_logger\n"
        "log = get_logger('app')\n"
        "handler = tracekit.lambda_handler(lambda event, context: log.info('hi', n=1))\n"
        "handler({}, types.SimpleNamespace(aws_request_id='r1'))\n"
        "sys.stdout.flush()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('structlog', 'asyncio')))\n"
    )
    env = {"AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",
           "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    out = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    line = json.loads(out[0])
    assert (line["message"], line["n"]) == ("hi", 1)
    assert (line["function_request_id"], line["cold_start"]) == ("r1", True)
    assert out[-1] == "[]"
