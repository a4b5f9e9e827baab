"""A request thread that never yields the GIL must not make tracekit drop spans."""

from __future__ import annotations

import flask
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from werkzeug.test import EnvironBuilder, run_wsgi_app

import tracekit
import tracekit.flask
from support.udp_receiver import UdpReceiver
from tracekit._shared import stats as _stats
from tracekit.tracing import provider


def test_a_tight_loop_of_10000_requests_drops_nothing_with_the_defaults(
    xray_daemon: UdpReceiver,
) -> None:
    _stats.reset()
    tracekit.configure(
        service="busy", exporters=["xray"], daemon_udp=("127.0.0.1", xray_daemon.port), sampler=ALWAYS_ON
    )
    app = flask.Flask("busy")
    app.add_url_rule("/orders/<int:n>", "order", lambda n: {"n": n})
    tracekit.flask.instrument(app)
    environ = EnvironBuilder(path="/orders/7").get_environ()
    try:
        for _ in range(10_000):  # no sleep, no I/O: the worker thread gets the GIL only when forced
            body, status, _headers = run_wsgi_app(app, dict(environ))
            b"".join(body)
            body.close()
            assert status.startswith("200")
        assert tracekit.force_flush()
    finally:
        provider.shutdown()
    counts = _stats.stats()
    assert counts.get("spans.dropped.queue_full", 0) == 0
    assert counts["xray.documents_sent"] == 10_000
