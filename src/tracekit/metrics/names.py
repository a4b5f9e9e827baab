"""The metrics tracekit itself emits: one definition of their names, units and dimensions, used by
the code that records them (``red.py``, the Lambda decorator) and by the dashboards and alarms
generated from them (``tracekit.dashboards``), so that a renamed metric cannot leave a chart behind.
"""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_NAMESPACE = "tracekit"
"""Without ``namespace=``, ``AWS_EMF_NAMESPACE`` or ``POWERTOOLS_METRICS_NAMESPACE``."""
SERVICE = "ServiceName"
"""The default dimension: added to every metric once a service name is known."""
ROUTE = "Route"
METHOD = "Method"
FUNCTION = "function_name"


class Metric(NamedTuple):
    """A metric tracekit emits, with its unit and its dimensions besides ``ServiceName``.

    A NamedTuple, not a dataclass: it is defined on every Lambda cold start, where a dataclass
    costs ~0.5 ms to build."""

    name: str
    unit: str
    dimensions: tuple[str, ...]


REQUESTS = Metric("RequestCount", "Count", (METHOD, ROUTE))
CLIENT_ERRORS = Metric("ClientErrors", "Count", (METHOD, ROUTE))
"""Responses 400-499 (0 for the others, so that a rate has a data point for every request)."""
SERVER_ERRORS = Metric("ServerErrors", "Count", (METHOD, ROUTE))
"""Responses 500-599, 0 for the others."""
LATENCY = Metric("Latency", "Milliseconds", (METHOD, ROUTE))
RED = (REQUESTS, CLIENT_ERRORS, SERVER_ERRORS, LATENCY)
COLD_START = Metric("ColdStart", "Count", (FUNCTION,))
"""1 per cold start of a function decorated with ``tracekit.aws_lambda``."""
EMITTED = (*RED, COLD_START)
