"""The Flask app the gunicorn test serves: configured at import, before gunicorn forks workers."""

from __future__ import annotations

from flask import Flask

import tracekit
import tracekit.flask

tracekit.configure(service="gunicorn-shop")  # daemon address and sampler from the environment
app = tracekit.flask.instrument(Flask("gunicorn-shop"))


@app.get("/orders/<order_id>")
def order(order_id: str) -> dict[str, object]:
    with tracekit.span("load-order"):
        return {"id": order_id}
