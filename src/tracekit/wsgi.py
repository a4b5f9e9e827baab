"""``import tracekit.wsgi``: the documented path to :mod:`tracekit.web.wsgi`."""

from tracekit.web.wsgi import TraceMiddleware

__all__ = ["TraceMiddleware"]
