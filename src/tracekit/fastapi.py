"""``import tracekit.fastapi``: the documented path to :mod:`tracekit.web.fastapi`."""

from tracekit.web.fastapi import instrument

__all__ = ["instrument"]
