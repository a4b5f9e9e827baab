"""CloudWatch dashboards, alarms and SLO burn-rate alarms as code, generated from the metrics
tracekit emits (``tracekit dashboards validate|plan|apply|export|drift``)."""

DEFAULT_PREFIX = "tracekit-"
"""Dashboards and alarms whose names start with the prefix are tracekit's: the only ones that
plan, apply and drift ever look at, change or delete."""
