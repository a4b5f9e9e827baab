"""``import tracekit.asgi``: the documented path to :mod:`tracekit.web.asgi`."""

from tracekit.web.asgi import TraceMiddleware

__all__ = ["TraceMiddleware"]
