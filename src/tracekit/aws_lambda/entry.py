"""The handler that ``/opt/tracekit-instrument`` puts in ``_HANDLER``: the function's own, instrumented.

The wrapper script saves the configured handler in ``TRACEKIT_ORIGINAL_HANDLER``. The runtime imports
this module and asks it for ``handler``; only then is the original imported (still during init, so
its import errors are init errors, as without tracekit) and wrapped with :func:`instrument`.
AWS SDK calls are traced too (the botocore instrumentation, as ADOT's wrapper does) when the function
imports boto3/botocore, unless ``TRACEKIT_INSTRUMENT`` says otherwise (``none``, or its own list,
which tracekit applies).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

ORIGINAL_VAR = "TRACEKIT_ORIGINAL_HANDLER"
ENTRY_POINT = "tracekit.aws_lambda.entry.handler"


class InitFault(Exception):
    """The original handler cannot be loaded. Each instance's type is named as the runtime names
    the same failure without the wrapper (``Runtime.ImportModuleError``, ``Runtime.HandlerNotFound``,
    ...), with the runtime's message, so alarms and log queries on those names keep working."""


def _fault(kind: str, message: str) -> InitFault:
    named: type[InitFault] = type(f"Runtime.{kind}", (InitFault,), {"__module__": __name__})
    return named(message)


def load_original(spec: str | None = None) -> Callable[..., Any]:
    """Import ``module.function`` (``/`` allowed in the module path, as Lambda allows)."""
    spec = spec if spec is not None else os.environ.get(ORIGINAL_VAR, "")
    module_name, dot, attr = spec.rpartition(".")
    if not dot or not module_name or not attr or spec == ENTRY_POINT:
        raise _fault("MalformedHandlerName", f"Bad handler {spec!r} in {ORIGINAL_VAR}: expected "
                     "module.function (the tracekit-instrument wrapper sets it from _HANDLER)")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _fault("ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    except SyntaxError as exc:
        raise _fault("UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}") from exc
    try:
        original: Callable[..., Any] = getattr(module, attr)
    except AttributeError:
        raise _fault("HandlerNotFound", f"Handler '{attr}' missing on module '{module_name}'") from None
    os.environ["_HANDLER"] = spec  # code that reads _HANDLER sees the function's own handler
    return original


def trace_aws_calls() -> None:
    """Instrument botocore if the function's module loaded it: clients made at init are covered (the
    patch is on botocore's classes), and a function without the AWS SDK pays nothing. Never raises."""
    if os.environ.get("TRACEKIT_INSTRUMENT", "").strip() or "botocore" not in sys.modules:
        return  # an explicit choice (tracekit.configure applies it), or no AWS SDK in this function
    from tracekit.tracing import instrument as outbound

    outbound.enable(("botocore",), quiet=True)


def __getattr__(name: str) -> Any:
    if name != "handler":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from tracekit.aws_lambda.handler import instrument

    original = load_original()
    trace_aws_calls()
    wrapped = instrument(original)
    globals()["handler"] = wrapped
    return wrapped
