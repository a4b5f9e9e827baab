"""Structured JSON logs for the sidecar's own messages: one object per line on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any

from tracekit._shared.redaction import mask_urls, redact


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...fields}``; ``extra={"fields": {...}}`` adds keys.

    Sensitive keys are redacted and credentials in URLs masked, wherever they appear in the line;
    an exception is its type and message (a traceback would be dozens of lines, in no log pipeline).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({str(k): redact(v, str(k)) for k, v in fields.items()})
        if record.exc_info and record.exc_info[1] is not None:  # the cause in one line, no traceback
            entry["exception"] = "".join(traceback.format_exception_only(record.exc_info[1])).strip()
        return mask_urls(json.dumps(entry, default=str))


def configure(level: str) -> None:
    """Send the ``tracekit`` loggers (sidecar and self-telemetry) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tracekit")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
