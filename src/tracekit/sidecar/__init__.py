"""The tracekit sidecar: a maintained drop-in for the X-Ray daemon, with health, metrics and a local mode.

Receivers (:class:`~tracekit.sidecar.pipeline.Listener`) feed one
:class:`~tracekit.xray.transports.SegmentSink`: the X-Ray sender, or the SQLite store in local mode.
"""
