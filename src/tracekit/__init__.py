"""tracekit: traces, metrics and logs for Python on AWS. OpenTelemetry inside, X-Ray native outside.

Every name below, and the sub-packages (``tracekit.metrics``, ``tracekit.logs``, ``tracekit.flask``...),
loads on first use, so ``import tracekit`` stays cheap (it matters on Lambda).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracekit import asgi as asgi
    from tracekit import aws_lambda as aws_lambda
    from tracekit import fastapi as fastapi
    from tracekit import flask as flask
    from tracekit import logs as logs
    from tracekit import metrics as metrics
    from tracekit import sampling as sampling
    from tracekit import wsgi as wsgi
    from tracekit._shared.settings import ConfigError as ConfigError
    from tracekit._shared.stats import stats as stats
    from tracekit.aws_lambda import lambda_handler as lambda_handler
    from tracekit.logs import get_logger as get_logger
    from tracekit.tracing.api import add_metadata as add_metadata
    from tracekit.tracing.api import annotate as annotate
    from tracekit.tracing.api import current_trace_header as current_trace_header
    from tracekit.tracing.api import current_trace_id as current_trace_id
    from tracekit.tracing.api import record_exception as record_exception
    from tracekit.tracing.api import span as span
    from tracekit.tracing.api import trace as trace
    from tracekit.tracing.provider import configure as configure
    from tracekit.tracing.provider import force_flush as force_flush
    from tracekit.tracing.provider import shutdown as shutdown

from tracekit._shared.settings import VERSION as __version__

_EXPORTS = {
    "trace": "tracekit.tracing.api",
    "span": "tracekit.tracing.api",
    "annotate": "tracekit.tracing.api",
    "add_metadata": "tracekit.tracing.api",
    "record_exception": "tracekit.tracing.api",
    "current_trace_id": "tracekit.tracing.api",
    "current_trace_header": "tracekit.tracing.api",
    "configure": "tracekit.tracing.provider",
    "force_flush": "tracekit.tracing.provider",
    "shutdown": "tracekit.tracing.provider",
    "stats": "tracekit._shared.stats",
    "ConfigError": "tracekit._shared.settings",
    "get_logger": "tracekit.logs",
    "lambda_handler": "tracekit.aws_lambda",
}
_SUBMODULES = frozenset(
    ("asgi", "aws_lambda", "fastapi", "flask", "logs", "metrics", "sampling", "wsgi")
)

__all__ = sorted((*_EXPORTS, *_SUBMODULES, "__version__"))


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value: Any = importlib.import_module(f"tracekit.{name}")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'tracekit' has no attribute {name!r}")
    globals()[name] = value
    return value
