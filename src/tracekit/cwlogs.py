"""``tracekit.cwlogs.LogsShipper``: the documented path to :mod:`tracekit.logs.cwlogs`."""

from tracekit.logs.cwlogs import LogsShipper

__all__ = ["LogsShipper"]
