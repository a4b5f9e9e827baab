"""Structured JSON logs correlated with traces: structlog loggers and stdlib records, one format.

Every line is one JSON object: ``timestamp`` (ISO-8601 UTC, ms), ``level``, ``message``, ``logger``,
``service``, ``xray_trace_id`` / ``trace_id`` / ``span_id`` when a span is current, the fields bound
with ``bind_context`` (the Lambda decorator binds request id, function name and cold start), the
call's own fields (sensitive keys redacted) and ``exception{type,message,stack}``. The lines go to
stdout; the same records can also be exported over OTLP (:mod:`tracekit.logs.otlp`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO, cast

from tracekit._shared import hooks, redaction, settings, stats
from tracekit._shared.settings import ConfigError
from tracekit.logs import buffer
from tracekit.logs.buffer import Record, RequestLog

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from tracekit.logs.otlp_export import Pipeline

__all__ = [
    "TracekitHandler",
    "bind_context",
    "clear_context",
    "configure",
    "emit",
    "flush",
    "get_logger",
    "request_finished",
    "request_scope",
    "request_started",
]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
          logging.ERROR: "error", logging.CRITICAL: "critical"}  # fmt: skip
_OWN_KEYS = frozenset(("timestamp", "level", "message", "logger", "service", "exception"))
_strict_encode = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False
).encode


class _Config(NamedTuple):  # not a dataclass: cheaper to define on a cold start
    level: int
    service: str | None
    """Given to ``configure``; otherwise the shared service name, read for each line."""
    stream: TextIO | None
    sample_rate: float
    buffer_debug: bool
    buffer_size: int
    request_log: bool
    stdout: bool = True
    """Write the JSON lines (to ``stream``, else stdout); off when OTLP is the only output."""

    @property
    def min_level(self) -> int:
        """Records below ``level`` reach the processor when they may be sampled or buffered."""
        return logging.DEBUG if self.sample_rate > 0 or self.buffer_debug else self.level


_config: _Config | None = None
_pipeline: Pipeline | None = None
"""The OTLP logs pipeline, when exporting over OTLP is on."""
_write_lock = threading.Lock()


def _new_write_lock() -> None:
    """A thread of the parent may have held the lock at fork time: the child would hang on it."""
    global _write_lock
    _write_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_write_lock)
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "tracekit_log_context", default=None
)
_request_tokens: contextvars.ContextVar[buffer.Token | None] = contextvars.ContextVar(
    "tracekit_request_token", default=None
)


def configure(
    level: str | int | None = None,
    service: str | None = None,
    *,
    stream: TextIO | None = None,
    stdlib: bool = True,
    debug_sample_rate: float | None = None,
    buffer_debug: bool = False,
    buffer_size: int = 200,
    request_log: bool = False,
    redact_keys: Iterable[str] = (),
    exporters: str | Sequence[str] | None = None,
    otlp: bool | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Set the level, service name and request behaviour; ``stdlib`` routes ``logging`` here too.

    ``debug_sample_rate``: share of requests whose debug lines are all written (env
    ``POWERTOOLS_LOGGER_SAMPLE_RATE``). ``buffer_debug``: keep a request's debug lines (up to
    ``buffer_size``) and write them only if the request ends in an error. ``redact_keys`` (and
    ``TRACEKIT_REDACT_KEYS``, comma-separated) extend the sensitive keys everywhere tracekit
    writes. ``request_log``: one ``request finished`` line per request, with ``duration_ms`` (for
    latency percentiles). With ``stdlib`` the root logger's handlers are replaced by one that writes
    this JSON, so each record appears once. ``exporters`` (``TRACEKIT_LOGS_EXPORTERS``): ``stdout``
    and/or ``otlp``; ``otlp=True`` adds OTLP to the stdout lines (see :mod:`tracekit.logs.otlp`).
    """
    global _config, _threshold
    env = os.environ if env is None else env
    if buffer_size < 1:
        raise ConfigError("buffer_size", buffer_size, "an integer >= 1")
    from tracekit.logs import otlp as _otlp

    outputs = _otlp.exporters_from(env, exporters, otlp)
    target = _otlp.target_from(env) if "otlp" in outputs else None
    from_env = (k.strip() for k in env.get("TRACEKIT_REDACT_KEYS", "").split(","))
    redaction.add_sensitive_keys([*redact_keys, *from_env])
    config = _Config(
        level=_parse_level(level, env),
        service=service,
        stream=stream,
        sample_rate=_parse_rate(debug_sample_rate, env),
        buffer_debug=buffer_debug,
        buffer_size=buffer_size,
        request_log=request_log,
        stdout="stdout" in outputs,
    )
    _replace_pipeline(_new_pipeline(target, service) if target is not None else None)
    _config = config
    _threshold = _config.min_level
    if stdlib:
        _install_stdlib_handler(_config.level)


def _new_pipeline(target: Any, service: str | None) -> Pipeline:
    """The OTLP pipeline; a ``ConfigError`` when the OTLP exporter is not installed (a slim layer)."""
    try:
        from tracekit.logs.otlp_export import Pipeline
    except ImportError as exc:
        raise ConfigError("TRACEKIT_LOGS_EXPORTERS", "otlp",
                          f"stdout only: the OTLP log exporter cannot be imported ({exc})") from None
    return Pipeline(target, service or settings.service_name())


def _replace_pipeline(pipeline: Pipeline | None) -> None:
    """Swap in the new pipeline (None: no OTLP export); the old one is flushed and shut down."""
    global _pipeline
    old, _pipeline = _pipeline, pipeline
    if old is not None:
        try:
            old.shutdown()
        except Exception as exc:
            stats.report("logs.otlp.shutdown", exc)


def flush(timeout: float = 5.0) -> bool:
    """Send the records waiting for OTLP export; True when done within ``timeout`` seconds (the
    Lambda decorator calls this right before the handler returns)."""
    pipeline = _pipeline
    if pipeline is None:
        return True
    try:
        done = pipeline.flush(timeout)
    except Exception as exc:
        stats.report("logs.otlp.flush", exc)
        return False
    if not done:
        stats.incr("logs.otlp.flush_timeouts")
    return done


def _parse_level(level: str | int | None, env: Mapping[str, str]) -> int:
    if level is None:
        name = next(
            (
                n
                for n in ("LOG_LEVEL", "POWERTOOLS_LOG_LEVEL", "AWS_LAMBDA_LOG_LEVEL")
                if env.get(n)
            ),
            "",
        )
        level, source = (env[name], name) if name else ("INFO", "level")
    else:
        source = "level"
    if isinstance(level, int) and level in _NAMES:
        return level
    value = _LEVELS.get(str(level).strip().lower())
    if value is None:
        raise ConfigError(source, level, "DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def _parse_rate(rate: float | None, env: Mapping[str, str]) -> float:
    source, raw = "debug_sample_rate", cast("float | str", rate)
    if rate is None:
        source, raw = "POWERTOOLS_LOGGER_SAMPLE_RATE", env.get("POWERTOOLS_LOGGER_SAMPLE_RATE", "0")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(source, raw, "a number between 0 and 1") from None
    if not 0 <= value <= 1:
        raise ConfigError(source, raw, "a number between 0 and 1")
    return value


def _active() -> _Config:
    if _config is None:
        try:
            configure(stdlib=False)
        except ConfigError as exc:  # a bad OTLP setting must not cost the stdout lines
            stats.report("logs.configure", exc)
            configure(stdlib=False, otlp=False)
    assert _config is not None
    return _config


def get_logger(name: str | None = None, **initial_values: Any) -> FilteringBoundLogger:
    """A structlog logger writing tracekit's JSON lines (configures from the environment if needed).

    structlog is imported here, not at module import: ``import tracekit.logs`` stays cheap.
    """
    import structlog

    _active()
    return cast(
        "FilteringBoundLogger",
        structlog.wrap_logger(
            _SINK,
            processors=[_process],
            wrapper_class=_logger_class(),
            context_class=dict,
            cache_logger_on_first_use=True,
            __logger=name or "root",
            **initial_values,
        ),
    )


_threshold = logging.INFO
"""The lowest level that reaches the processor now (``_Config.min_level``), read on every call."""
_bound_class: Any = None


def _logger_class() -> Any:
    """structlog's logger class with each level method gated on the *current* configuration.

    structlog's filtering classes fix their level when the logger is made; a module-level
    ``get_logger()`` runs before the application calls ``configure()``, so it would keep the
    default level forever. The processor checks the level again (async methods, ``log()``).
    """
    global _bound_class
    if _bound_class is None:
        import structlog

        base = structlog.make_filtering_bound_logger(logging.DEBUG)
        methods: dict[str, Any] = {
            name: _gated(getattr(base, name), level)
            for name, level in {**_LEVELS, "msg": logging.INFO}.items()
        }
        methods["is_enabled_for"] = lambda self, level: level >= _threshold
        methods["get_effective_level"] = lambda self: _threshold
        _bound_class = type("TracekitBoundLogger", (base,), methods)
    return _bound_class


def _gated(method: Any, levelno: int) -> Any:
    def log_at_level(self: Any, event: str | None = None, *args: Any, **kw: Any) -> Any:
        if levelno < _threshold:
            return None
        return method(self, event, *args, **kw)

    return log_at_level


def bind_context(**fields: Any) -> None:
    """Add fields to every line of the current context (request, invocation, task)."""
    current = _context.get()
    _context.set({**current, **fields} if current else fields)


def clear_context() -> None:
    _context.set(None)


def request_started() -> None:
    """Call when a request/invocation starts: decides debug sampling, starts the debug buffer."""
    config = _active()
    _, token = buffer.start(config.sample_rate, config.buffer_size)
    _request_tokens.set(token)


def request_finished(error: bool = False, **fields: Any) -> None:
    """Call at the end: on error the buffered debug lines are written.

    With ``configure(request_log=True)`` one ``request finished`` line is written with
    ``duration_ms``, ``error`` and ``fields`` (route, method, status...): the README's Logs Insights
    latency query reads it. Middleware passes its fields always; the setting decides.
    """
    token = _request_tokens.get()
    _request_tokens.set(None)
    _finish(None, token, error, fields)


def _finish(
    state: RequestLog | None, token: buffer.Token | None, error: bool, fields: dict[str, Any]
) -> None:
    try:
        state = buffer.finish(token, error, _write_record, state)
        if state is None:
            return
        fields = {**state.fields, **fields}
        if _active().request_log:
            duration = round((time.perf_counter() - state.started) * 1000, 3)
            fields.setdefault("duration_ms", duration)
            fields.setdefault("error", error or state.error)
            get_logger("tracekit.request").info("request finished", **fields)
    except Exception as exc:
        stats.report("logs.request_finished", exc)


@contextmanager
def request_scope(**context_fields: Any) -> Iterator[RequestLog]:
    """``request_started`` / ``request_finished`` around a block; an exception counts as an error.

    ``context_fields`` (the Lambda decorator passes request id, function name, cold start) are on
    every line inside the block. Set ``state.error = True`` for failures that do not raise (a 5xx
    response) and fill ``state.fields`` for the ``request finished`` line.
    """
    config = _active()
    context_token = _context.set({**(_context.get() or {}), **context_fields})
    state, token = buffer.start(config.sample_rate, config.buffer_size)
    failed = False
    try:
        yield state
    except BaseException:
        failed = True
        raise
    finally:
        _finish(state, token, failed, {})
        try:
            _context.reset(context_token)
        except ValueError:  # exited in another context (FastAPI generator dependencies): harmless
            stats.incr("logs.request_scope.other_context")


def emit(levelno: int, logger: str, event: MutableMapping[str, Any]) -> None:
    """Write ``event`` (message under ``event``, plus fields) as a ``get_logger`` call would, for
    loggers that do not go through structlog (the Lambda logger: structlog's import costs cold
    start). Never raises."""
    try:
        line = _dispatch(levelno, logger, event, time.time())
        if line is not None:
            _write(line)
    except Exception as exc:
        stats.report("logs.emit", exc)


def _process(_: Any, method: str, event: MutableMapping[str, Any]) -> str:
    """The one structlog processor: level/sampling/buffer decision, then the JSON line."""
    try:
        line = _dispatch(
            _LEVELS.get(method, logging.INFO),
            str(event.pop("__logger", "root")),
            event,
            time.time(),
        )
    except Exception as exc:
        stats.report("logs.render", exc)
        line = None
    if line is None:
        from structlog import DropEvent

        raise DropEvent
    return line


def _dispatch(
    levelno: int, logger: str, event: MutableMapping[str, Any], created: float
) -> str | None:
    """The line to write now, or None when the record is dropped or buffered."""
    config = _active()
    request = buffer.current()
    if levelno < config.level:
        if request is None or not (request.sampled or config.buffer_debug):
            return None
        record = _record(config, levelno, logger, event, created)
        if request.sampled:
            return _output(config, record)
        request.keep(record)
        return None
    if levelno >= logging.ERROR and request is not None and request.buffer:
        request.release(_write_record)
    return _output(config, _record(config, levelno, logger, event, created))


def _output(config: _Config, record: Record) -> str | None:
    """Hand ``record`` to the OTLP pipeline (when on); the line to write, None without stdout."""
    pipeline = _pipeline
    if pipeline is not None:
        try:
            pipeline.emit(record)
        except Exception as exc:
            stats.report("logs.otlp.emit", exc)
    return _encode(record) if config.stdout else None


def _record(
    config: _Config, levelno: int, logger: str, event: MutableMapping[str, Any], created: float
) -> Record:
    record: Record = {
        "timestamp": _iso(created),
        "level": _NAMES.get(levelno, "info"),
        "message": str(event.pop("event", "")),
        "logger": logger,
        "service": config.service or settings.service_name(),
    }
    correlation = _correlation()
    if correlation:
        record.update(correlation)
    exc_info = event.pop("exc_info", None)
    context = _context.get()
    for fields in (context, event):
        for key, value in (fields or {}).items():
            if key not in _OWN_KEYS:
                record[key] = _redacted(key, value)
    if exc_info:
        record["exception"] = _exception(exc_info)
    return record


_sensitive: dict[str, bool] = {}
_sensitive_words: object = None


def _is_sensitive(key: str) -> bool:
    """``redaction.is_sensitive`` memoised per key; reset when the sensitive-word list changes."""
    global _sensitive_words
    words = redaction._pattern  # replaced (never mutated) by add_sensitive_keys
    if words is not _sensitive_words:
        _sensitive.clear()
        _sensitive_words = words
    found = _sensitive.get(key)
    if found is None:
        found = redaction.is_sensitive(key)
        if len(_sensitive) < 10_000:
            _sensitive[key] = found
    return found


def _redacted(key: str, value: Any) -> Any:
    if _is_sensitive(key):
        return redaction.REDACTED
    if isinstance(value, (dict, list, tuple)):
        return redaction.redact(value)  # depth-bounded: a cycle ends in "[TOO DEEP]"
    return value


_second: tuple[int, str] = (0, "")


def _iso(created: float) -> str:
    """``2026-11-25T15:40:01.123Z``; the formatted second is cached (most lines share it)."""
    global _second
    whole = int(created)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((created - whole) * 1000):03d}Z"


_get_current_span: Any = None
_to_xray_trace_id: Any = None


def _correlation() -> dict[str, str] | None:
    """Trace fields of the current span; OTel and ``tracekit.xray.ids`` load on first use, not import."""
    global _get_current_span, _to_xray_trace_id
    if _get_current_span is None:
        from opentelemetry.trace import get_current_span

        from tracekit.xray.ids import to_xray_trace_id

        _get_current_span, _to_xray_trace_id = get_current_span, to_xray_trace_id
    context = _get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return {
        "xray_trace_id": _to_xray_trace_id(context.trace_id),
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
    }


def _exception(exc_info: Any) -> dict[str, str]:
    if isinstance(exc_info, BaseException):
        exc: BaseException | None = exc_info
    elif isinstance(exc_info, tuple):
        exc = exc_info[1]
    else:
        exc = sys.exc_info()[1]
    if exc is None:
        return {"type": "None", "message": "", "stack": ""}
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"type": type(exc).__qualname__, "message": str(exc), "stack": stack}


def _encode(record: Record) -> str:
    """One JSON line; NaN, infinities and cycles (not JSON) become their ``repr`` strings, so Logs
    Insights can still parse the line."""
    try:
        return _strict_encode(record)
    except ValueError:
        return _strict_encode({key: _json_or_repr(value) for key, value in record.items()})


def _json_or_repr(value: Any) -> Any:
    try:
        _strict_encode(value)
    except ValueError:
        return repr(value)
    return value


def _write(line: str) -> None:
    stream = (_config.stream if _config else None) or sys.stdout
    with _write_lock:
        stream.write(line + "\n")
        stream.flush()


def _write_record(record: Record) -> None:
    line = _output(_active(), record)
    if line is not None:
        _write(line)


class _Sink:
    """The structlog "logger": writes the rendered line whatever the method name."""

    def msg(self, line: str) -> None:
        try:
            _write(line)
        except Exception as exc:
            stats.report("logs.write", exc)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


_SINK = _Sink()

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class TracekitHandler(logging.Handler):
    """Writes stdlib ``logging`` records as tracekit JSON, with the same correlation fields."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
            event["event"] = _message(record)
            if record.exc_info and record.exc_info[1] is not None:
                event["exc_info"] = record.exc_info
            line = _dispatch(record.levelno, record.name, event, record.created)
            if line is not None:
                _write(line)
        except Exception as exc:
            if record.name == "tracekit":  # report() would log through this handler again
                stats.incr("errors.logs.stdlib")
            else:
                stats.report("logs.stdlib", exc)


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()``; when its arguments do not fit the format, the raw parts instead of
    losing the line (the library's bug must not hide what it wanted to say)."""
    try:
        return record.getMessage()
    except Exception:
        stats.incr("logs.stdlib.bad_format")
        return f"{record.msg} {record.args!r}"


def _install_stdlib_handler(level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(TracekitHandler())
    root.setLevel(level)


hooks.register_logs(hooks.LogHooks(request_started, request_finished, request_scope, flush))
