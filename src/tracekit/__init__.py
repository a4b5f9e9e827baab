"""tracekit: traces, metrics and logs for Python on AWS. OpenTelemetry inside, X-Ray native outside.

The names below load on first use, so ``import tracekit`` stays cheap (it matters on Lambda).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracekit._stats import stats as stats
    from tracekit.api import add_metadata as add_metadata
    from tracekit.api import annotate as annotate
    from tracekit.api import current_trace_header as current_trace_header
    from tracekit.api import current_trace_id as current_trace_id
    from tracekit.api import record_exception as record_exception
    from tracekit.api import span as span
    from tracekit.api import trace as trace
    from tracekit.aws_lambda import lambda_handler as lambda_handler
    from tracekit.config import ConfigError as ConfigError
    from tracekit.logs import get_logger as get_logger
    from tracekit.provider import configure as configure
    from tracekit.provider import force_flush as force_flush
    from tracekit.provider import shutdown as shutdown

__version__ = "0.1.0"

_EXPORTS = {
    "trace": "tracekit.api",
    "span": "tracekit.api",
    "annotate": "tracekit.api",
    "add_metadata": "tracekit.api",
    "record_exception": "tracekit.api",
    "current_trace_id": "tracekit.api",
    "current_trace_header": "tracekit.api",
    "configure": "tracekit.provider",
    "force_flush": "tracekit.provider",
    "shutdown": "tracekit.provider",
    "stats": "tracekit._stats",
    "ConfigError": "tracekit.config",
    "get_logger": "tracekit.logs",
    "lambda_handler": "tracekit.aws_lambda",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tracekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
