"""AWS Lambda: ``@tracekit.lambda_handler``, the zero-code entry point and the layer build.

    import tracekit

    @tracekit.lambda_handler
    def handler(event, context): ...

or, without code changes, the tracekit layer with ``AWS_LAMBDA_EXEC_WRAPPER=/opt/tracekit-instrument``.
"""

from __future__ import annotations

from tracekit.aws_lambda.handler import instrument, lambda_handler

__all__ = ["instrument", "lambda_handler"]
