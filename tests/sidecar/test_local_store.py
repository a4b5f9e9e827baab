"""The local store's file: schema versions (refused or migrated, never emptied) and the one variable
naming it, shared by the sidecar and `tracekit traces`."""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekit.cli import main as tracekit_main
from tracekit.sidecar import store as store_module
from tracekit.sidecar.settings import OPTIONS, default_db_path, resolve
from tracekit.sidecar.store import SCHEMA_VERSION, LocalStore, StoreError, connect

TRACE = "1-6b0705a8-0123456789abcdef01234567"
V2_SCHEMA = """
CREATE TABLE documents (id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, parent_id TEXT, name TEXT,
    request TEXT, is_segment INTEGER NOT NULL, start_time REAL, end_time REAL,
    in_progress INTEGER NOT NULL, problem INTEGER NOT NULL, received REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX documents_trace ON documents (trace_id);
PRAGMA user_version=2;
"""


def old_store(path: Path, version: int, rows: int) -> None:
    """A store as another tracekit wrote it: the version-2 table, ``rows`` documents."""
    db = sqlite3.connect(path)
    db.executescript(V2_SCHEMA.replace("user_version=2", f"user_version={version}"))
    for i in range(rows):
        doc = {"name": "api", "id": f"{i:016x}", "trace_id": f"1-6b0705a8-{i:024x}", "start_time": 10.0 + i,
               "end_time": 10.5 + i, "annotations": {"n": i}}
        db.execute("INSERT INTO documents VALUES (?, ?, NULL, 'api', NULL, 1, ?, ?, 0, 0, ?, ?)",
                   (doc["id"], doc["trace_id"], doc["start_time"], doc["end_time"], 1.0 + i, json.dumps(doc)))
    db.commit()
    db.close()


def count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    finally:
        db.close()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement the store's connections run."""
    seen: list[str] = []
    real = sqlite3.connect

    def traced(*args: object, **kwargs: object) -> sqlite3.Connection:
        db = real(*args, **kwargs)  # type: ignore[call-overload]
        db.set_trace_callback(seen.append)
        return db

    monkeypatch.setattr(store_module.sqlite3, "connect", traced)
    yield seen


def test_a_store_of_another_schema_version_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], statements: list[str]
) -> None:
    db = tmp_path / "traces.db"
    old_store(db, version=99, rows=500)
    statements.clear()
    for command in (["list"], ["show", TRACE]):
        assert tracekit_main(["traces", "--db", str(db), *command]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "schema version 99" in err and str(db) in err
    assert count(db) == 500
    assert not [s for s in statements if s.split()[0].upper() in ("DROP", "DELETE", "CREATE", "ALTER")]
    with pytest.raises(StoreError, match="schema version 99"):
        LocalStore(db, retention=10, max_bytes=1 << 20)  # nor does the sidecar's writer empty it
    assert count(db) == 500


def test_a_version_2_store_is_migrated_by_adding_and_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], statements: list[str]
) -> None:
    db = tmp_path / "traces.db"
    old_store(db, version=2, rows=30)
    statements.clear()
    assert tracekit_main(["traces", "list", "--db", str(db), "--limit", "100"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 31 and f"1-6b0705a8-{29:024x}" in out.splitlines()[1]
    assert count(db) == 30
    assert not [s for s in statements if s.split()[0].upper() in ("DROP", "DELETE", "ALTER")]
    version = sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_a_file_that_is_not_a_store_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 100)
    assert tracekit_main(["traces", "list", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "cannot be opened as a tracekit store: file is not a database" in err
    assert db.read_text().startswith("these are my notes")


def test_traces_and_the_sidecar_read_one_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "chosen.db"
    monkeypatch.setenv("TRACEKIT_SIDECAR_LOCAL_DB", str(db))
    monkeypatch.delenv("TRACEKIT_LOCAL_DB", raising=False)
    args = argparse.Namespace(**{opt.name: None for opt in OPTIONS}, config=None)
    assert resolve(args).local_db == db == default_db_path()
    LocalStore(db, retention=10, max_bytes=1 << 20).close(1)
    assert tracekit_main(["traces", "list"]) == 0
    assert capsys.readouterr().out.startswith("no traces stored")


def test_db_after_the_command_and_counts_below_one_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.db"
    old_store(db, version=2, rows=3)
    assert tracekit_main(["traces", "list", "--db", str(db)]) == 0
    assert f"1-6b0705a8-{2:024x}" in capsys.readouterr().out
    assert tracekit_main(["traces", "--db", str(db), "list", "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    for limit in ("0", "-5"):
        assert tracekit_main(["traces", "list", "--db", str(db), "--limit", limit]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and f"--limit={limit}" in err and "at least 1" in err


def test_two_writers_opening_a_new_file_agree(tmp_path: Path) -> None:
    """The sidecar opens the file twice (documents and EMF lines): the second finds it made."""
    db = tmp_path / "new.db"
    first, second = connect(db), connect(db)
    assert second.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    first.close()
    second.close()


def test_the_sidecar_refuses_such_a_store_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "traces.db"
    old_store(db, version=99, rows=20)
    result = subprocess.run(
        [sys.executable, "-m", "tracekit.cli", "sidecar", "--local", "--local-db", str(db),
         "--udp-address", "127.0.0.1:0", "--tcp-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0",
         "--otlp-address", "off", "--emf-address", "off"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "schema version 99" in json.loads(line)["message"]
    assert count(db) == 20
