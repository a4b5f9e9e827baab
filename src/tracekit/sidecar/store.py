"""Local mode's trace store: segment documents in SQLite, newest ``retention`` traces kept.

The sidecar writes from one thread through a :class:`~tracekit._shared.batching.BatchQueue`;
``tracekit traces`` reads the same file (WAL mode, so reading never blocks the writer).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tracekit._shared import stats
from tracekit._shared.batching import BatchQueue, QueuedSink

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT,
    request TEXT,
    is_segment INTEGER NOT NULL,
    start_time REAL,
    end_time REAL,
    in_progress INTEGER NOT NULL,
    problem INTEGER NOT NULL,
    received REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_trace ON documents (trace_id);
CREATE INDEX IF NOT EXISTS documents_received ON documents (received);
"""
UPSERT = """
INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    parent_id = excluded.parent_id, name = excluded.name, request = excluded.request,
    start_time = excluded.start_time,
    end_time = excluded.end_time, in_progress = excluded.in_progress, problem = excluded.problem,
    received = excluded.received, body = excluded.body
WHERE documents.in_progress = 1 OR excluded.in_progress = 0
"""
PRUNE = """
DELETE FROM documents WHERE trace_id IN (
    SELECT trace_id FROM documents GROUP BY trace_id ORDER BY MAX(received) DESC LIMIT -1 OFFSET ?
)
"""


SCHEMA_VERSION = 2


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) the store; safe for one writer and any number of readers.

    The store is a local cache: one written by another schema version is emptied, not migrated.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        db.executescript(f"DROP TABLE IF EXISTS documents; PRAGMA user_version={SCHEMA_VERSION};")
    db.executescript(SCHEMA)
    return db


class LocalStore(QueuedSink[bytes]):
    """The local-mode sink: bounded like the X-Ray sender, written in transactions of up to 500."""

    def __init__(self, path: Path, retention: int, max_bytes: int) -> None:
        self.path = path
        self._retention = retention
        self._db = connect(path)
        self._queue: BatchQueue[bytes] = BatchQueue(
            self._write,
            max_batch=500,
            max_bytes=max_bytes,
            max_wait=0.2,
            name="sidecar.local",
        )

    def close(self, timeout: float) -> None:
        super().close(timeout)
        self._db.close()

    def _write(self, batch: list[bytes]) -> None:
        now = time.time()
        rows = [row for doc in batch if (row := _row(doc, now)) is not None]
        with self._db:
            self._db.executemany(UPSERT, rows)
            self._db.execute(PRUNE, (self._retention,))
        stats.incr("sidecar.local.stored", len(rows))


def _row(raw: bytes, received: float) -> tuple[Any, ...] | None:
    """The indexed columns of one document, or None (counted) when it is not a segment."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in ("id", "trace_id", "start_time") if k not in doc]
        if missing:
            raise ValueError("missing " + ", ".join(missing))
        start = float(doc["start_time"])
        end = float(doc["end_time"]) if doc.get("end_time") is not None else None
    except (ValueError, TypeError) as exc:
        stats.incr("sidecar.local.dropped.invalid_document")
        stats.warn_once_per_interval(
            "sidecar.local.invalid", "local store: invalid segment document: %s", exc
        )
        return None
    is_segment = doc.get("type") != "subsegment"
    return (
        str(doc["id"]), str(doc["trace_id"]), doc.get("parent_id"), str(doc.get("name", "")),
        _request(doc), int(is_segment), start, end, int(end is None), int(_has_problem(doc)),
        received, raw.decode("utf-8", "replace"),
    )


def _request(doc: dict[str, Any]) -> str | None:
    """``POST /orders/3`` from the document's ``http.request``, if it has one."""
    http = doc.get("http")
    request = http.get("request") if isinstance(http, dict) else None
    if not isinstance(request, dict):
        return None
    path = urlsplit(str(request.get("url", ""))).path
    return f"{request.get('method', '')} {path}".strip() or None


def _has_problem(doc: dict[str, Any]) -> bool:
    if doc.get("error") or doc.get("fault") or doc.get("throttle"):
        return True
    return any(_has_problem(sub) for sub in doc.get("subsegments", ()) if isinstance(sub, dict))


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root: str
    request: str | None
    services: list[str]
    start: float
    duration_ms: float | None
    documents: int
    problem: bool


def list_traces(
    db: sqlite3.Connection, service: str | None = None, errors: bool = False, limit: int = 50
) -> list[TraceSummary]:
    """Newest traces first, optionally only those touching ``service`` or with an error."""
    where, params = [], []
    if service:
        where.append("trace_id IN (SELECT trace_id FROM documents WHERE is_segment AND name = ?)")
        params.append(service)
    having = "HAVING MAX(problem) = 1" if errors else ""
    sql = f"""
        SELECT trace_id, MIN(start_time), MAX(end_time), COUNT(*), MAX(problem), MAX(in_progress),
               GROUP_CONCAT(CASE WHEN is_segment THEN name END, char(31)),
               (SELECT name || char(31) || COALESCE(request, '') FROM documents r
                WHERE r.trace_id = d.trace_id
                ORDER BY (r.parent_id IS NOT NULL), r.start_time LIMIT 1)
        FROM documents d {"WHERE " + " AND ".join(where) if where else ""}
        GROUP BY trace_id {having} ORDER BY MAX(received) DESC, MIN(start_time) DESC LIMIT ?
    """
    rows = db.execute(sql, (*params, limit)).fetchall()
    return [
        TraceSummary(
            trace_id=tid,
            root=(root or "?").split("\x1f")[0],
            request=(root or "").partition("\x1f")[2] or None,
            services=sorted(set((names or "").split("\x1f")) - {""}),
            start=start,
            duration_ms=None if in_progress or end is None else (end - start) * 1000,
            documents=count,
            problem=bool(problem),
        )
        for tid, start, end, count, problem, in_progress, names, root in rows
    ]


def trace_documents(db: sqlite3.Connection, trace_id: str) -> list[dict[str, Any]]:
    """Every stored document of one trace (the completed version where both arrived)."""
    rows = db.execute(
        "SELECT body FROM documents WHERE trace_id = ? ORDER BY start_time", (trace_id,)
    ).fetchall()
    return [json.loads(body) for (body,) in rows]
