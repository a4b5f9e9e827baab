"""The handler that ``/opt/tracekit-instrument`` puts in ``_HANDLER``: the function's own, instrumented.

The wrapper script saves the configured handler in ``TRACEKIT_ORIGINAL_HANDLER``. The runtime imports
this module and asks it for ``handler``; only then is the original imported (still during init, so
its import errors are init errors, as without tracekit) and wrapped with :func:`instrument`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

ORIGINAL_VAR = "TRACEKIT_ORIGINAL_HANDLER"
ENTRY_POINT = "tracekit.aws_lambda.entry.handler"


class HandlerNotFound(Exception):
    """The configured handler function does not exist (not an ``AttributeError``: the runtime would
    then report the entry point, not the function's module, as the one missing it)."""


def load_original(spec: str | None = None) -> Callable[..., Any]:
    """Import ``module.function`` (``/`` allowed in the module path, as Lambda allows)."""
    spec = spec if spec is not None else os.environ.get(ORIGINAL_VAR, "")
    module_name, dot, attr = spec.rpartition(".")
    if not dot or not module_name or not attr or spec == ENTRY_POINT:
        raise ValueError(
            f"{ORIGINAL_VAR}={spec!r} is not valid: expected the function's handler as module.function "
            "(the tracekit-instrument wrapper sets it from _HANDLER)"
        )
    module = importlib.import_module(module_name.replace("/", "."))
    try:
        original: Callable[..., Any] = getattr(module, attr)
    except AttributeError:
        missing = f"handler {attr!r} missing on module {module_name!r} ({ORIGINAL_VAR})"
        raise HandlerNotFound(missing) from None
    os.environ["_HANDLER"] = spec  # code that reads _HANDLER sees the function's own handler
    return original


def __getattr__(name: str) -> Any:
    if name != "handler":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from tracekit.aws_lambda.handler import instrument

    wrapped = instrument(load_original())
    globals()["handler"] = wrapped
    return wrapped
