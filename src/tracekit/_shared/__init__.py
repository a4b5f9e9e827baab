"""The private layer every part of tracekit shares: settings, self-statistics, redaction, batching,
SigV4 signing and the hooks through which integrations reach logs and metrics.

Nothing here imports from the rest of tracekit.
"""
