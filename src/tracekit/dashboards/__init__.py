"""CloudWatch dashboards, alarms and SLO burn-rate alarms as code, generated from the metrics
tracekit emits (``tracekit dashboards validate|plan|apply|export|drift``)."""
