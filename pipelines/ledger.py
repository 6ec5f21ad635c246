"""The ledger: every file received, by content hash, and what became of it.

SQLite in WAL mode rather than DuckDB: `sdmi status` must read it while a run writes it, and DuckDB
allows no reader beside a writer across processes. Each call opens its own short connection, so
threads and processes share it safely; transactions make each state change all-or-nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines import faults

FINAL = ("processed", "held", "rejected")
IN_FLIGHT = ("claimed", "archived")

_DDL = """
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    agency TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    reason_code TEXT, reason_id TEXT, reason_en TEXT,
    batch_id TEXT NOT NULL,
    raw_path TEXT,
    rows_read INTEGER, rows_accepted INTEGER, rows_quarantined INTEGER, rows_warned INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256 TEXT NOT NULL,
    agency TEXT NOT NULL,
    file_name TEXT NOT NULL,
    received_at TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    release_id TEXT,
    summary TEXT
);
"""


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    seq: int
    agency: str
    file_name: str
    size: int
    received_at: datetime
    status: str
    reason_code: str | None
    reason_id: str | None
    reason_en: str | None
    batch_id: str
    raw_path: str | None
    rows_read: int | None
    rows_accepted: int | None
    rows_quarantined: int | None
    rows_warned: int | None
    attempts: int


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_DDL)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout=60000")
        con.execute("PRAGMA synchronous=FULL")
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                faults.point("ledger.commit")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ files
    def claim(self, sha256: str, agency: str, file_name: str, size: int) -> tuple[FileEntry, bool]:
        """Record a new file; returns (entry, is_new). An existing hash means the content was seen before."""
        received = now_utc().isoformat()
        with self._transaction() as con:
            row = con.execute("SELECT * FROM files WHERE sha256 = ?", (sha256,)).fetchone()
            if row is None:
                seq = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM files").fetchone()[0]
                batch_id = f"{agency}-{sha256[:16]}"
                con.execute(
                    "INSERT INTO files (sha256, seq, agency, file_name, size, received_at, status, batch_id,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, 'claimed', ?, ?)",
                    (sha256, seq, agency, file_name, size, received, batch_id, received),
                )
                con.execute(
                    "INSERT INTO receipts (sha256, agency, file_name, received_at, outcome) VALUES (?, ?, ?, ?, 'new')",
                    (sha256, agency, file_name, received),
                )
                row = con.execute("SELECT * FROM files WHERE sha256 = ?", (sha256,)).fetchone()
                return _entry(row), True
            return _entry(row), False

    def record_duplicate(self, sha256: str, agency: str, file_name: str) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT INTO receipts (sha256, agency, file_name, received_at, outcome)"
                " VALUES (?, ?, ?, ?, 'duplicate')",
                (sha256, agency, file_name, now_utc().isoformat()),
            )

    def forget_claim(self, sha256: str) -> None:
        """Undo a claim whose file never reached the archive (crash between claim and archive)."""
        with self._transaction() as con:
            con.execute("DELETE FROM files WHERE sha256 = ? AND status = 'claimed'", (sha256,))
            con.execute("DELETE FROM receipts WHERE sha256 = ? AND outcome = 'new'", (sha256,))

    def mark_archived(self, sha256: str, raw_path: str) -> None:
        self._update(sha256, status="archived", raw_path=raw_path)

    def start_attempt(self, sha256: str) -> None:
        with self._transaction() as con:
            con.execute("UPDATE files SET attempts = attempts + 1 WHERE sha256 = ?", (sha256,))

    def finish(
        self,
        sha256: str,
        status: str,
        *,
        rows_read: int | None = None,
        rows_accepted: int | None = None,
        rows_quarantined: int | None = None,
        rows_warned: int | None = None,
        reason_code: str | None = None,
        reason_id: str | None = None,
        reason_en: str | None = None,
    ) -> None:
        assert status in FINAL, status
        self._update(
            sha256,
            status=status,
            rows_read=rows_read,
            rows_accepted=rows_accepted,
            rows_quarantined=rows_quarantined,
            rows_warned=rows_warned,
            reason_code=reason_code,
            reason_id=reason_id,
            reason_en=reason_en,
        )

    def reopen(self, sha256: str) -> None:
        """Replay: a final file goes back to 'archived' so that it is processed again from raw."""
        self._update(sha256, status="archived", reason_code=None, reason_id=None, reason_en=None)

    def _update(self, sha256: str, **values: object) -> None:
        values["updated_at"] = now_utc().isoformat()
        sets = ", ".join(f"{k} = ?" for k in values)
        with self._transaction() as con:
            cur = con.execute(f"UPDATE files SET {sets} WHERE sha256 = ?", (*values.values(), sha256))
            if cur.rowcount != 1:
                raise KeyError(f"no ledger entry for {sha256[:12]}")

    def get(self, sha256: str) -> FileEntry | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM files WHERE sha256 = ?", (sha256,)).fetchone()
        return _entry(row) if row else None

    def files(self, status: tuple[str, ...] | None = None, agency: str | None = None) -> list[FileEntry]:
        query, params = "SELECT * FROM files WHERE 1=1", []
        if status:
            query += f" AND status IN ({','.join('?' * len(status))})"
            params += list(status)
        if agency:
            query += " AND agency = ?"
            params.append(agency)
        with self._connect() as con:
            return [_entry(r) for r in con.execute(query + " ORDER BY seq", params)]

    def receipts(self, sha256: str | None = None) -> list[dict]:
        with self._connect() as con:
            if sha256:
                rows = con.execute("SELECT * FROM receipts WHERE sha256 = ? ORDER BY id", (sha256,))
            else:
                rows = con.execute("SELECT * FROM receipts ORDER BY id")
            return [dict(r) for r in rows]

    # ------------------------------------------------------------------ runs
    def start_run(self, run_id: str) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO runs (run_id, started_at, status) VALUES (?, ?, 'running')",
                (run_id, now_utc().isoformat()),
            )

    def end_run(self, run_id: str, status: str, release_id: str | None, summary: str) -> None:
        with self._transaction() as con:
            con.execute(
                "UPDATE runs SET ended_at = ?, status = ?, release_id = ?, summary = ? WHERE run_id = ?",
                (now_utc().isoformat(), status, release_id, summary, run_id),
            )

    def runs(self, limit: int = 10) -> list[dict]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
            return [dict(r) for r in rows]


def _entry(row: sqlite3.Row) -> FileEntry:
    d = dict(row)
    d.pop("updated_at", None)
    d["received_at"] = datetime.fromisoformat(d["received_at"])
    return FileEntry(**d)
