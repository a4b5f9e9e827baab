"""``import tracekit.flask``: the documented path to :mod:`tracekit.web.flask`."""

from tracekit.web.flask import instrument

__all__ = ["instrument"]
