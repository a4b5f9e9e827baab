"""AWS Lambda: ``@tracekit.lambda_handler``, the zero-code entry point and the layer build.

    import tracekit
    from tracekit.aws_lambda import get_logger

    log = get_logger(__name__)  # tracekit.get_logger's lines, without importing structlog

    @tracekit.lambda_handler
    def handler(event, context): ...

or, without code changes, the tracekit layer with ``AWS_LAMBDA_EXEC_WRAPPER=/opt/tracekit-instrument``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracekit.aws_lambda.handler import instrument, lambda_handler

if TYPE_CHECKING:
    from tracekit.aws_lambda.logger import get_logger as get_logger

__all__ = ["get_logger", "instrument", "lambda_handler"]


def __getattr__(name: str) -> Any:
    """``get_logger`` loads on first use: the handler adds log fields only when logs are used."""
    if name != "get_logger":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from tracekit.aws_lambda.logger import get_logger

    return get_logger
