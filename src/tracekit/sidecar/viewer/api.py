"""What the viewer serves: its static files and the read-only JSON API under ``/api/``.

    GET /api/status                   {"traces", "last_received", "emf_last", "db", "sampling"}
    GET /api/traces?...               newest first; filters service, status, min_ms, annotation
                                      (key=value), q (text in names); limit, after (paging cursor)
    GET /api/services                 service names in the store
    GET /api/traces/ID                the waterfall: every entity with depth, service, namespace,
                                      status, details and raw document; the trace's EMF documents
    GET /api/traces/ID/export         the trace in the shape of X-Ray's BatchGetTraces
    GET /api/map?minutes=N            service map of the traces started in the last N minutes
    GET /api/metrics?minutes=N        one time series per EMF metric (namespace, name)
    GET /api/sampling                 the local control plane's rules, statistics and boosts

Framework-free: :meth:`Viewer.respond` maps a path to (status, headers, body) for any server.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tracekit.sidecar import store
from tracekit.sidecar.httpserver import Reply
from tracekit.sidecar.viewer.servicemap import service_map
from tracekit.xray.tree import Document, seconds, walk

Overview = Callable[[], dict[str, Any]]

TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Defence in depth: the page renders every value as text, and the policy forbids inline scripts."""
MAX_PAGE = 500
DETAILS = ("http", "aws", "sql", "annotations", "metadata", "cause", "links")


class BadRequest(ValueError):
    """A query parameter that is not accepted: answered 400 with the message."""


class NotFound(Exception):
    """No such trace or endpoint: answered 404 with the message (a KeyError from a bug stays a 500)."""


class Viewer:
    """Answers the viewer's requests from the store at ``db_path`` (opened per request, read-only
    use) and, when given, the sampling control plane's ``overview``."""

    def __init__(self, db_path: Path, sampling: Overview | None = None) -> None:
        self.db_path = db_path
        self._sampling = sampling
        self._routes: dict[str, Callable[[sqlite3.Connection, dict[str, str]], Any]] = {
            "status": self._status, "traces": self._traces, "services": self._services,
            "map": self._map, "metrics": self._metrics, "sampling": self._sampling_view,
        }  # fmt: skip

    def respond(self, target: str) -> Reply | None:
        """The reply to ``GET target``, or None when the path is not the viewer's."""
        url = urlsplit(target)
        path = url.path
        if path in ("/", "/index.html"):
            return _static("index.html")
        if path == "/favicon.ico":  # browsers ask; nothing to show
            return 204, dict(SECURITY_HEADERS), b""
        if path.startswith("/static/") and path[len("/static/"):] in STATIC:
            return _static(path[len("/static/"):])
        if not path.startswith("/api/"):
            return None
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            return _json(200, self._api(path[len("/api/"):].strip("/"), query))
        except BadRequest as exc:
            return _json(400, {"error": str(exc)})
        except NotFound as exc:
            return _json(404, {"error": str(exc)})
        except store.StoreError as exc:
            return _json(503, {"error": str(exc)})

    def _api(self, route: str, query: dict[str, str]) -> Any:
        parts = [unquote(p) for p in route.split("/")]
        db = store.connect(self.db_path)
        try:
            if parts[0] == "traces" and len(parts) in (2, 3):
                if not TRACE_ID.match(parts[1]) or parts[2:] not in ([], ["export"]):
                    raise NotFound(f"no such trace or page: /api/{route}")
                return (_export if parts[2:] else _trace)(db, parts[1])
            handler = self._routes.get(route)
            if handler is None:
                raise NotFound(f"no API at /api/{route}: see /api/status")
            return handler(db, query)
        finally:
            db.close()

    # -- endpoints -------------------------------------------------------------------------------

    def _status(self, db: sqlite3.Connection, query: dict[str, str]) -> Any:
        count, last = db.execute("SELECT COUNT(*), MAX(received) FROM traces").fetchone()
        (emf_last,) = db.execute("SELECT MAX(seq) FROM emf").fetchone()
        return {"traces": count, "last_received": last, "emf_last": emf_last, "db": str(self.db_path),
                "sampling": self._sampling is not None}

    def _traces(self, db: sqlite3.Connection, query: dict[str, str]) -> Any:
        where = store.TraceFilter(
            service=query.get("service") or None, status=_choice(query, "status", store.STATUSES),
            min_ms=_number(query, "min_ms"), annotation=query.get("annotation") or None,
            text=query.get("q") or None,
        )  # fmt: skip
        if where.annotation and "=" not in where.annotation:
            raise BadRequest(f"annotation={where.annotation!r} is not valid: expected key=value")
        given = _number(query, "limit")
        limit = 50 if given is None else int(given)
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit={limit} is not valid: expected 1 to {MAX_PAGE}")
        after = _cursor(query.get("after"))
        rows = store.list_traces(db, where, limit=limit + 1, before=after)
        page = rows[:limit]
        more = len(rows) > limit
        return {
            "traces": [{**t.__dict__, "problem": t.problem} for t in page],
            "next": f"{page[-1].start!r}|{page[-1].trace_id}" if more else None,
        }

    def _services(self, db: sqlite3.Connection, query: dict[str, str]) -> Any:
        names = {s for (packed,) in db.execute("SELECT DISTINCT services FROM traces")
                 for s in packed.split(store.SEP) if s}
        return {"services": sorted(names)}

    def _map(self, db: sqlite3.Connection, query: dict[str, str]) -> Any:
        minutes = _number(query, "minutes")
        minutes = 15.0 if minutes is None else minutes
        until = time.time()
        since = until - minutes * 60
        return {"since": since, "until": until, **service_map(store.documents_since(db, since, until))}

    def _metrics(self, db: sqlite3.Connection, query: dict[str, str]) -> Any:
        minutes = _number(query, "minutes") or 60.0
        series: dict[tuple[str, str], dict[str, Any]] = {}
        for doc in store.emf_lines(db, since=time.time() - minutes * 60):
            for value in emf_values(doc):
                key = (value["namespace"], value["name"])
                entry = series.setdefault(key, {"namespace": key[0], "name": key[1],
                                                "unit": value["unit"], "points": []})
                entry["points"].append([value["timestamp"], value["value"]])
        return {"series": [series[k] for k in sorted(series)]}

    def _sampling_view(self, db: sqlite3.Connection, query: dict[str, str]) -> Any:
        if self._sampling is None:
            return {"available": False, "rules": []}
        return {"available": True, **self._sampling()}


# -- one trace -----------------------------------------------------------------------------------


def _trace(db: sqlite3.Connection, trace_id: str) -> dict[str, Any]:
    documents = store.trace_documents(db, trace_id)
    if not documents:
        raise NotFound(f"trace {trace_id} is not in the store")
    return {"trace_id": trace_id, **waterfall(documents),
            "emf": [{"document": doc, "values": emf_values(doc)}
                    for doc in store.emf_lines(db, trace_id=trace_id)]}


def waterfall(documents: list[Document]) -> dict[str, Any]:
    """Every entity in tree order with what the page draws and shows; times in seconds."""
    raw: dict[Any, Document] = {}

    def index(doc: Document) -> None:
        raw.setdefault(doc.get("id"), doc)
        for sub in doc.get("subsegments", ()):
            if isinstance(sub, dict):
                index(sub)

    for doc in documents:
        index(doc)
    nodes = walk(documents)
    starts = [s for _, n in nodes if (s := seconds(n.get("start_time"))) is not None]
    ends = [e for _, n in nodes if (e := seconds(n.get("end_time"))) is not None]
    service: dict[Any, str] = {}
    spans = []
    for depth, node in nodes:
        segment = node.get("type") != "subsegment"
        name = str(node.get("name", "?"))
        service[node.get("id")] = name if segment else service.get(node.get("parent_id"), "?")
        spans.append({
            "id": node.get("id"), "parent_id": node.get("parent_id"), "depth": depth, "name": name,
            "kind": "segment" if segment else "subsegment", "service": service[node.get("id")],
            "namespace": node.get("namespace") or "local", "origin": node.get("origin"),
            "start": seconds(node.get("start_time")), "end": seconds(node.get("end_time")),
            "error": bool(node.get("error")), "fault": bool(node.get("fault")),
            "throttle": bool(node.get("throttle")),
            **{key: node.get(key) for key in DETAILS if node.get(key) is not None},
            "document": raw.get(node.get("id"), node),
        })  # fmt: skip
    start = min(starts, default=0.0)
    return {"start": start, "end": max([*ends, start]), "spans": spans}


def _export(db: sqlite3.Connection, trace_id: str) -> dict[str, Any]:
    """``{"Traces": [{"Id", "Duration", "Segments": [{"Id", "Document"}]}]}`` like BatchGetTraces."""
    documents = store.trace_documents(db, trace_id)
    if not documents:
        raise NotFound(f"trace {trace_id} is not in the store")
    view = waterfall(documents)
    return {"Traces": [{
        "Id": trace_id, "Duration": round(view["end"] - view["start"], 6), "LimitExceeded": False,
        "Segments": [{"Id": d.get("id"), "Document": json.dumps(d)} for d in documents],
    }], "UnprocessedTraceIds": []}  # fmt: skip


# -- EMF -----------------------------------------------------------------------------------------


def emf_values(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per metric value of an EMF document (arrays give several)."""
    meta = doc.get("_aws") or {}
    timestamp = float(meta.get("Timestamp", 0)) / 1000
    out = []
    for directive in meta.get("CloudWatchMetrics") or ():
        for metric in directive.get("Metrics") or ():
            name = str(metric.get("Name", ""))
            values = doc.get(name)
            for value in values if isinstance(values, list) else [values]:
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out.append({"namespace": str(directive.get("Namespace", "")), "name": name,
                                "unit": metric.get("Unit", "None"), "value": value,
                                "timestamp": timestamp})
    return out


# -- helpers -------------------------------------------------------------------------------------


def _number(query: dict[str, str], key: str) -> float | None:
    text = query.get(key, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{key}={text!r} is not valid: expected a number") from None
    if value < 0 or value != value:
        raise BadRequest(f"{key}={text!r} is not valid: expected a number of at least 0")
    return value


def _choice(query: dict[str, str], key: str, accepted: tuple[str, ...]) -> str | None:
    value = query.get(key) or None
    if value is not None and value not in accepted:
        raise BadRequest(f"{key}={value!r} is not valid: expected one of {', '.join(accepted)}")
    return value


def _cursor(text: str | None) -> tuple[float, str] | None:
    """``after=START|TRACE_ID`` from the previous page's ``next``."""
    if not text:
        return None
    start, _, trace_id = text.partition("|")
    try:
        return float(start), trace_id
    except ValueError:
        raise BadRequest(f"after={text!r} is not valid: expected the 'next' of the previous page") from None


def _json(status: int, payload: Any) -> Reply:
    return status, {"Content-Type": "application/json", **SECURITY_HEADERS}, json.dumps(payload).encode()


def _static(name: str) -> Reply:
    body = resources.files("tracekit.sidecar.viewer").joinpath("static", name).read_bytes()
    return 200, {"Content-Type": STATIC[name] + "; charset=utf-8", **SECURITY_HEADERS}, body
