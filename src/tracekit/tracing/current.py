"""Set and read the current OpenTelemetry context with one call instead of three.

OpenTelemetry keeps the current context in a ``ContextVar`` behind two layers of calls
(``context.attach`` -> the runtime context -> ``ContextVar.set``). A traced request attaches and
detaches its context several times, so tracekit's request path goes to that variable directly:
the same variable, so instrumentations see exactly what the API would show them. With another
runtime context configured (``OTEL_PYTHON_CONTEXT``) the public API is used instead.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

from opentelemetry import context as _api
from opentelemetry.context import Context

from tracekit._shared import stats


def _variable() -> ContextVar[Context] | None:
    """OpenTelemetry's default runtime context's variable; None for any other runtime context."""
    from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

    runtime = getattr(_api, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and isinstance(variable, ContextVar):
        return variable
    return None


_VARIABLE = _variable()

attach: Callable[[Context], Token[Context]] = _api.attach if _VARIABLE is None else _VARIABLE.set
"""Make ``context`` current; returns the token for :func:`detach`."""
get_current: Callable[[], Context] = _api.get_current if _VARIABLE is None else _VARIABLE.get
"""The current context."""


def detach(token: Token[Context]) -> None:
    """Restore the context from before ``token``'s :func:`attach`; never raises (as the API)."""
    if _VARIABLE is None:
        _api.detach(token)
        return
    try:
        _VARIABLE.reset(token)
    except Exception as exc:  # a token from another context or reset twice: the API logs it too
        stats.report("context.detach", exc)
