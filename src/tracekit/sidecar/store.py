"""Local mode's store: segment documents and EMF lines in SQLite, the newest ``retention`` of each kept.

The sidecar writes from one thread per kind through a :class:`~tracekit._shared.batching.BatchQueue`;
``tracekit traces`` and the viewer read the same file (WAL mode, so reading never blocks the writer).
A ``traces`` table keeps one summary row per trace, updated as its documents arrive, so that listing
and filtering 10,000 traces reads one indexed row each instead of every document.

The file carries a schema version (``PRAGMA user_version``). Older versions are migrated by adding
what is missing; a file of an unknown version is refused (:class:`StoreError`), never emptied.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tracekit._shared import stats
from tracekit._shared.batching import BatchQueue, QueuedSink
from tracekit.xray.tree import flatten, roots, seconds

T = TypeVar("T", bytes, str)
SCHEMA_VERSION = 3
SEP = "\x1f"
"""Separator of the names, services and annotations packed into one column (never in a name)."""

DOCUMENTS = """
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
SUMMARIES = """
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    start REAL NOT NULL,
    end REAL,
    in_progress INTEGER NOT NULL,
    root TEXT NOT NULL,
    request TEXT,
    status INTEGER,
    services TEXT NOT NULL,
    spans INTEGER NOT NULL,
    error INTEGER NOT NULL,
    fault INTEGER NOT NULL,
    throttle INTEGER NOT NULL,
    names TEXT NOT NULL,
    annotations TEXT NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start DESC, trace_id DESC);
CREATE INDEX IF NOT EXISTS traces_received ON traces (received);
CREATE TABLE IF NOT EXISTS emf (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT,
    timestamp REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS emf_trace ON emf (trace_id);
CREATE INDEX IF NOT EXISTS emf_timestamp ON emf (timestamp);
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


class StoreError(Exception):
    """The file is not a store this version can read (one line, for the CLI and the sidecar)."""


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) the store; safe for one writer per kind and any number of readers.

    Raises :class:`StoreError` for a file written by an unknown (e.g. newer) schema version.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} cannot be opened as a tracekit store: {exc}") from None
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        _prepare(db, path)
    except StoreError:
        db.close()
        raise
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StoreError(f"{path} cannot be opened as a tracekit store: {exc}") from None
    return db


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """Create a new store, or bring a version-2 one up to date by adding tables; refuse the rest.

    Readers run this too: it only ever adds (tables, indexes, summary rows), in one transaction.
    """
    if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    with db:
        db.execute("BEGIN IMMEDIATE")  # two processes opening a new file: one creates, one waits
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        tables = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if version not in (0, 2) or (version == 0 and tables):
            raise StoreError(
                f"{path} has store schema version {version} (this tracekit reads {SCHEMA_VERSION}): "
                "use the tracekit that wrote it, or another --db / TRACEKIT_SIDECAR_LOCAL_DB"
            )
        for statement in (DOCUMENTS + SUMMARIES).split(";"):
            if statement.strip():
                db.execute(statement)
        _summarize(db, [tid for (tid,) in db.execute("SELECT DISTINCT trace_id FROM documents")])
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


class _StoreWriter(QueuedSink[T]):
    """Items queued (bounded, like the X-Ray sender) and written into the store file in
    transactions of up to 500; the newest ``retention`` are kept."""

    def __init__(self, path: Path, retention: int, max_bytes: int, name: str) -> None:
        self.path = path
        self._retention = retention
        self._db = connect(path)
        self._queue = BatchQueue(self._write, max_batch=500, max_bytes=max_bytes, max_wait=0.2, name=name)

    def close(self, timeout: float) -> None:
        super().close(timeout)
        self._db.close()

    def _write(self, batch: list[T]) -> None:
        raise NotImplementedError


class LocalStore(_StoreWriter[bytes]):
    """The local-mode sink of segment documents."""

    def __init__(self, path: Path, retention: int, max_bytes: int) -> None:
        super().__init__(path, retention, max_bytes, "sidecar.local")

    def _write(self, batch: list[bytes]) -> None:
        now = time.time()
        rows = [row for doc in batch if (row := _row(doc, now)) is not None]
        with self._db:
            self._db.executemany(UPSERT, rows)
            _summarize(self._db, {row[1] for row in rows})
            old = [tid for (tid,) in self._db.execute(
                "SELECT trace_id FROM traces ORDER BY received DESC LIMIT -1 OFFSET ?", (self._retention,))]
            self._db.executemany("DELETE FROM documents WHERE trace_id = ?", [(t,) for t in old])
            self._db.executemany("DELETE FROM traces WHERE trace_id = ?", [(t,) for t in old])
        stats.incr("sidecar.local.stored", len(rows))


class EmfStore(_StoreWriter[str]):
    """Valid EMF lines of local mode, kept (the newest ``retention``) for the viewer."""

    def __init__(self, path: Path, retention: int, max_bytes: int) -> None:
        super().__init__(path, retention, max_bytes, "sidecar.local.emf")

    def _write(self, batch: list[str]) -> None:
        rows = [_emf_row(line) for line in batch]
        with self._db:
            self._db.executemany("INSERT INTO emf (trace_id, timestamp, body) VALUES (?, ?, ?)", rows)
            self._db.execute("DELETE FROM emf WHERE seq <= (SELECT MAX(seq) FROM emf) - ?",
                             (self._retention,))
        stats.incr("sidecar.local.emf.stored", len(rows))


def _emf_row(line: str) -> tuple[str | None, float, str]:
    """Lines reach here validated by the EMF receiver: an object with ``_aws.Timestamp`` in ms."""
    doc = json.loads(line)
    trace = doc.get("xray_trace_id") or doc.get("traceId")
    return (str(trace) if trace else None), float(doc["_aws"]["Timestamp"]) / 1000, line


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
        request_line(doc), int(is_segment), start, end, int(end is None), int(_has_problem(doc)),
        received, raw.decode("utf-8", "replace"),
    )


def request_line(doc: dict[str, Any]) -> str | None:
    """``POST /orders/3`` from the document's ``http.request``, if it has one."""
    http = doc.get("http")
    request = http.get("request") if isinstance(http, dict) else None
    if not isinstance(request, dict):
        return None
    try:
        path = urlsplit(str(request.get("url", ""))).path
    except ValueError:  # e.g. "http://[not-ipv6/": show it as sent
        path = str(request.get("url", ""))
    return f"{request.get('method', '')} {path}".strip() or None


def _has_problem(doc: dict[str, Any]) -> bool:
    if doc.get("error") or doc.get("fault") or doc.get("throttle"):
        return True
    subsegments = doc.get("subsegments")
    return isinstance(subsegments, list) and any(
        _has_problem(sub) for sub in subsegments if isinstance(sub, dict))


def _summarize(db: sqlite3.Connection, trace_ids: Iterable[str]) -> None:
    """(Re)write the ``traces`` row of each trace from its stored documents."""
    for trace_id in trace_ids:
        rows = db.execute(
            "SELECT body, received FROM documents WHERE trace_id = ?", (trace_id,)).fetchall()
        if rows:
            docs = [json.loads(body) for body, _ in rows]
            db.execute("INSERT OR REPLACE INTO traces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (trace_id, *summary_columns(docs), max(r for _, r in rows)))


def summary_columns(documents: list[dict[str, Any]]) -> tuple[Any, ...]:
    """start, end, in_progress, root, request, status, services ... annotations of one trace.

    Tolerant of documents from the wild: a nested value of the wrong type is left out, never fatal
    (the top-level ids and times were checked on arrival).
    """
    nodes = flatten(documents)
    starts = [s for n in nodes if (s := seconds(n.get("start_time"))) is not None]
    ends = [e for n in nodes if (e := seconds(n.get("end_time"))) is not None]
    root = min(roots(nodes), key=lambda n: seconds(n.get("start_time")) or 0.0)
    services = sorted({str(n.get("name", "")) for n in nodes if n.get("type") != "subsegment"})
    annotations = [f"{k}={v}" for n in nodes for k, v in _mapping(n.get("annotations")).items()]
    status = _mapping(_mapping(root.get("http")).get("response")).get("status")
    return (
        min(starts), max(ends) if ends else None,
        int(any(n.get("in_progress") or seconds(n.get("end_time")) is None for n in nodes)),
        str(root.get("name", "?")), request_line(root),
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        _packed(services), len(nodes),
        *(int(any(n.get(flag) for n in nodes)) for flag in ("error", "fault", "throttle")),
        _packed(str(n.get("name", "")) for n in nodes), _packed(annotations),
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _packed(values: Iterable[str]) -> str:
    """``\\x1fa\\x1fb\\x1f``: an exact member test is ``instr(column, SEP || value || SEP)``."""
    return SEP + "".join(v.replace(SEP, " ") + SEP for v in values)


@dataclass(frozen=True)
class TraceFilter:
    """What the trace list can be narrowed by (every field optional)."""

    service: str | None = None
    status: str | None = None
    """``error``, ``fault``, ``throttle``, ``problem`` (any of them) or ``ok``."""
    min_ms: float | None = None
    annotation: str | None = None
    """``key=value``, exactly as recorded."""
    text: str | None = None
    """Part of any segment's or subsegment's name (case-insensitive)."""

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["1"]
        params: list[Any] = []
        if self.service:
            clauses.append("instr(services, ?) > 0")
            params.append(SEP + self.service + SEP)
        if self.status in ("error", "fault", "throttle"):
            clauses.append(f"{self.status} = 1")
        elif self.status == "problem":
            clauses.append("(error OR fault OR throttle)")
        elif self.status == "ok":
            clauses.append("NOT (error OR fault OR throttle)")
        if self.min_ms is not None:
            clauses.append("NOT in_progress AND (end - start) * 1000 >= ?")
            params.append(self.min_ms)
        if self.annotation:
            clauses.append("instr(annotations, ?) > 0")
            params.append(SEP + self.annotation + SEP)
        if self.text:
            clauses.append("instr(lower(names), ?) > 0")
            params.append(self.text.lower())
        return " AND ".join(clauses), params


STATUSES = ("error", "fault", "throttle", "problem", "ok")


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    root: str
    request: str | None
    status: int | None
    services: list[str]
    start: float
    duration_ms: float | None
    spans: int
    documents: int
    error: bool
    fault: bool
    throttle: bool

    @property
    def problem(self) -> bool:
        return self.error or self.fault or self.throttle


SUMMARY = """
SELECT trace_id, root, request, status, services, start, end, in_progress, spans, error, fault, throttle,
       (SELECT COUNT(*) FROM documents d WHERE d.trace_id = t.trace_id)
FROM traces t
"""


def list_traces(
    db: sqlite3.Connection,
    where: TraceFilter = TraceFilter(),
    limit: int = 50,
    before: tuple[float, str] | None = None,
) -> list[TraceSummary]:
    """Newest (by start) first; ``before`` = the last row's (start, trace_id) gives the next page.

    Keyset paging walks the ``traces_start`` index, so a page costs the same at any depth.
    """
    sql, params = where.where()
    if before is not None:
        sql += " AND (start, trace_id) < (?, ?)"
        params.extend(before)
    rows = db.execute(
        f"{SUMMARY} WHERE {sql} ORDER BY start DESC, trace_id DESC LIMIT ?", (*params, limit)
    ).fetchall()
    return [
        TraceSummary(
            trace_id=tid, root=root, request=request, status=status,
            services=[s for s in services.split(SEP) if s], start=start,
            duration_ms=None if in_progress or end is None else (end - start) * 1000,
            spans=spans, documents=docs, error=bool(error), fault=bool(fault), throttle=bool(throttle),
        )
        for tid, root, request, status, services, start, end, in_progress, spans, error, fault, throttle,
        docs in rows
    ]  # fmt: skip


def trace_documents(db: sqlite3.Connection, trace_id: str) -> list[dict[str, Any]]:
    """Every stored document of one trace (the completed version where both arrived)."""
    rows = db.execute(
        "SELECT body FROM documents WHERE trace_id = ? ORDER BY start_time", (trace_id,)
    ).fetchall()
    return [json.loads(body) for (body,) in rows]


def documents_since(db: sqlite3.Connection, since: float, until: float) -> list[dict[str, Any]]:
    """The documents of every trace that started in [since, until] (for the service map)."""
    rows = db.execute(
        "SELECT body FROM documents WHERE trace_id IN "
        "(SELECT trace_id FROM traces WHERE start >= ? AND start <= ?)", (since, until)
    ).fetchall()
    return [json.loads(body) for (body,) in rows]


def emf_lines(
    db: sqlite3.Connection, trace_id: str | None = None, since: float | None = None, limit: int = 5000
) -> list[dict[str, Any]]:
    """Stored EMF documents, oldest first: of one trace, or the newest ``limit`` since a time."""
    if trace_id is not None:
        rows = db.execute("SELECT body FROM emf WHERE trace_id = ? ORDER BY seq", (trace_id,))
    else:
        rows = db.execute(
            "SELECT body FROM (SELECT seq, body FROM emf WHERE timestamp >= ? ORDER BY seq DESC LIMIT ?) "
            "ORDER BY seq", (since or 0.0, limit))  # fmt: skip
    return [json.loads(body) for (body,) in rows]
