"""``tracekit.aws_lambda.get_logger``: ``tracekit.get_logger``'s JSON lines without importing structlog.

Importing structlog (and the asyncio it pulls in) is ~15 ms of a cold start, about as much as the
rest of tracekit adds to the OpenTelemetry SDK. This logger has the calls handlers make (level
methods with fields, ``%`` arguments, ``exception``, ``bind``/``unbind``/``new``, the ``a``-prefixed
async forms) and writes through ``tracekit.logs.emit``: the same lines, correlation, request fields,
redaction, sampling and debug buffering as the structlog logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tracekit import logs
from tracekit._shared import stats

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class Logger:
    """A bound logger: a name and the fields on every line it writes (immutable, like structlog's)."""

    __slots__ = ("_fields", "_name")

    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        self._name, self._fields = name, fields

    def bind(self, **fields: Any) -> Logger:
        return Logger(self._name, {**self._fields, **fields})

    def unbind(self, *keys: str) -> Logger:
        """Without ``keys`` (a missing key is a ``KeyError``, as in structlog)."""
        missing = [key for key in keys if key not in self._fields]
        if missing:
            raise KeyError(missing[0])
        return self.try_unbind(*keys)

    def try_unbind(self, *keys: str) -> Logger:
        return Logger(self._name, {k: v for k, v in self._fields.items() if k not in keys})

    def new(self, **fields: Any) -> Logger:
        return Logger(self._name, fields)

    def log(self, level: int, event: str | None = None, *args: Any, **fields: Any) -> None:
        logs.emit(level, self._name, {**self._fields, **fields, "event": _interpolate(event, args)})

    def exception(self, event: str | None = None, *args: Any, **fields: Any) -> None:
        """``error`` with the current exception's type, message and stack."""
        fields.setdefault("exc_info", True)
        self.log(logging.ERROR, event, *args, **fields)

    async def aexception(self, event: str | None = None, *args: Any, **fields: Any) -> None:
        self.exception(event, *args, **fields)

    # Level methods (debug, info, ...) and their async forms are added below.
    debug: Callable[..., None]
    info: Callable[..., None]
    msg: Callable[..., None]
    warning: Callable[..., None]
    warn: Callable[..., None]
    error: Callable[..., None]
    critical: Callable[..., None]
    fatal: Callable[..., None]


def _interpolate(event: str | None, args: tuple[Any, ...]) -> Any:
    """``event % args`` as structlog does (one mapping argument: ``%(name)s`` placeholders)."""
    if not args or not isinstance(event, str):
        return event
    try:
        return event % (args[0] if len(args) == 1 and isinstance(args[0], dict) else args)
    except (TypeError, ValueError, KeyError):  # the line is kept, the call never raises
        stats.incr("logs.lambda.bad_format")
        return f"{event} {args!r}"


def _at(level: int) -> tuple[Callable[..., None], Callable[..., Any]]:
    def method(self: Logger, event: str | None = None, *args: Any, **fields: Any) -> None:
        self.log(level, event, *args, **fields)

    async def async_method(self: Logger, event: str | None = None, *args: Any, **fields: Any) -> None:
        self.log(level, event, *args, **fields)

    return method, async_method


for _name, _level in _LEVELS.items():
    _sync, _async = _at(_level)
    setattr(Logger, _name, _sync)
    setattr(Logger, f"a{_name}", _async)


def get_logger(name: str | None = None, **fields: Any) -> Logger:
    """A logger writing tracekit's JSON lines, for Lambda functions (see the module docstring)."""
    return Logger(name or "root", fields)
