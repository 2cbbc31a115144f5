"""The durable upload queue: an upload's life in SQL (table ``uploads`` of {state_dir}/catalog.sqlite3).

States: ``pending`` -> ``uploading`` -> ``uploaded``. A failed attempt sends the row back to ``pending`` with its
own ``next_attempt_at`` (per-object backoff), its ``last_error`` and, when the failure was the object's own (the
store otherwise works), ``failures`` + 1. After ``s3Config.maxAttempts`` such failures the row is ``failed``:
kept on disk, shown by ``status``, no longer tried until ``cctv-daemon uploads retry`` re-queues it. A permanent
store error (bad credentials, missing bucket) also leaves the row ``failed`` but without counting a failure, and
it is retried at the backoff cap. ``abandoned`` when the local file is gone before it was uploaded. Rows found
in ``uploading`` at startup belong to a killed run and go back to ``pending``. ``check_remote`` marks rows queued
by reconciliation: the bucket is asked first, and an object already there with the same size is not sent again.

Durability: ``synchronous=FULL`` so that a queued row survives a power cut, not only a crash of the process
(one small transaction per segment; the cost is one fsync per segment, negligible next to writing it).

Test hook: ``CCTV_UPLOAD_QUEUE_FAULT=<method>:<count>`` makes the first ``count`` calls of that method raise
``sqlite3.OperationalError("database is locked (injected)")``. Never set in production.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cctv_daemon.catalog import sqlite_db

FAULT_ENV = "CCTV_UPLOAD_QUEUE_FAULT"

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads(
    path TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    start REAL NOT NULL,
    size INTEGER NOT NULL,
    s3_key TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    etag TEXT,
    sha256 TEXT,
    queued_at REAL NOT NULL,
    uploaded_at REAL,
    failures INTEGER NOT NULL DEFAULT 0,
    check_remote INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS uploads_state_start ON uploads(state, start);
"""
# Columns added after the first schema: (name, definition) for ALTER TABLE on an existing catalog.
ADDED_COLUMNS = (
    ("failures", "INTEGER NOT NULL DEFAULT 0"),
    ("check_remote", "INTEGER NOT NULL DEFAULT 0"),
)

PENDING = "pending"
UPLOADING = "uploading"
UPLOADED = "uploaded"
FAILED = "failed"
ABANDONED = "abandoned"
WAITING = (PENDING, FAILED)  # rows that still have to be uploaded
RETRYABLE = (PENDING, FAILED)  # what `uploads retry KEY` accepts


@dataclass(frozen=True)
class UploadRow:
    path: str  # relative to savePath, POSIX
    camera: str
    start: float
    size: int
    s3_key: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    etag: str | None
    sha256: str | None
    queued_at: float
    uploaded_at: float | None
    failures: int = 0
    check_remote: int = 0


@dataclass(frozen=True)
class MissingSegment:
    """A complete segment of the catalog without an upload row."""

    rowid: int
    path: str
    camera: str
    start: float
    size: int
    added_at: float


_COLUMNS = ", ".join(UploadRow.__dataclass_fields__)
_GIVEN_UP = "state = 'failed' AND failures >= ?"


def connect(db_path: Path) -> sqlite3.Connection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_db.connect(db_path, synchronous="FULL")


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Create the table, or add the columns an older catalog lacks (in place, rows kept). Returns those added."""
    conn.executescript(SCHEMA)
    have = {str(r[1]) for r in conn.execute("PRAGMA table_info(uploads)")}
    added = []
    for name, definition in ADDED_COLUMNS:
        if name not in have:
            try:
                conn.execute(f"ALTER TABLE uploads ADD COLUMN {name} {definition}")
                added.append(name)
            except sqlite3.OperationalError as exc:  # another process added it meanwhile
                if "duplicate column" not in str(exc):
                    raise
    return added


def _fault_from_env() -> tuple[str, int] | None:
    raw = os.environ.get(FAULT_ENV, "")
    name, _, count = raw.partition(":")
    if not name:
        return None
    try:
        return name, int(count or "1")
    except ValueError:
        return None


class UploadQueue:
    """Thread-safe (one connection behind a lock); every method is one committed transaction."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._conn = connect(db_path)
        self._lock = threading.Lock()
        fault = _fault_from_env()
        self._faults: dict[str, int] = {fault[0]: fault[1]} if fault else {}
        self.fault: Callable[[str], None] | None = None  # tests: called with the method name, may raise
        with self._lock:
            self.migrated = migrate(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _check_fault(self, method: str) -> None:
        if self.fault is not None:
            self.fault(method)
        left = self._faults.get(method, 0)
        if left > 0:
            self._faults[method] = left - 1
            raise sqlite3.OperationalError(f"database is locked (injected fault in {method})")

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            cur = self._conn.execute(sql, params)
            return cur.rowcount

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[UploadRow]:
        with self._lock:
            return [UploadRow(*r) for r in self._conn.execute(sql, params).fetchall()]

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    # -- queueing ---------------------------------------------------------------------------------------
    def enqueue(self, path: str, camera: str, start: float, size: int, s3_key: str, now: float) -> bool:
        """Queue a finished segment (committed when this returns); False when it was queued already."""
        self._check_fault("enqueue")
        return (
            self._write(
                "INSERT INTO uploads(path, camera, start, size, s3_key, state, queued_at)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT(path) DO NOTHING",
                (path, camera, start, size, s3_key, PENDING, now),
            )
            == 1
        )

    def recover(self) -> int:
        """Rows a killed run left in 'uploading' go back to 'pending' (their upload is redone)."""
        self._check_fault("recover")
        return self._write("UPDATE uploads SET state=? WHERE state=?", (PENDING, UPLOADING))

    def claim(self, now: float, exclude: tuple[str, ...] = (), max_attempts: int | None = None) -> UploadRow | None:
        """The oldest waiting row that is due, marked 'uploading' (attempts + 1); None when there is none.
        With ``max_attempts``, 'failed' rows that used them up are not taken (only `uploads retry` does)."""
        self._check_fault("claim")
        marks = ",".join("?" * len(exclude))
        skip = f" AND path NOT IN ({marks})" if exclude else ""
        limit = 1 << 62 if max_attempts is None else max_attempts
        with self._lock:
            self._begin()
            try:
                found = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM uploads WHERE (state=? OR (state=? AND failures < ?))"
                    f" AND next_attempt_at <= ?{skip} ORDER BY start, path LIMIT 1",
                    (PENDING, FAILED, limit, now, *exclude),
                ).fetchone()
                if found is None:
                    self._conn.execute("COMMIT")
                    return None
                row = UploadRow(*found)
                self._conn.execute(
                    "UPDATE uploads SET state=?, attempts=attempts+1 WHERE path=?", (UPLOADING, row.path)
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return UploadRow(**{**row.__dict__, "state": UPLOADING, "attempts": row.attempts + 1})

    # -- outcomes -------------------------------------------------------------------------------------------
    def mark_uploaded(self, path: str, etag: str, sha256: str, now: float) -> None:
        self._check_fault("mark_uploaded")
        self._write(
            "UPDATE uploads SET state=?, etag=?, sha256=?, uploaded_at=?, last_error=NULL, next_attempt_at=0,"
            " check_remote=0 WHERE path=?",
            (UPLOADED, etag, sha256, now, path),
        )

    def mark_failed(self, path: str, permanent: bool, error: str, next_attempt_at: float) -> None:
        """The store failed (not this object): back in the queue for later, no failure counted; 'failed' when
        the error is permanent. A row retention abandoned meanwhile stays abandoned."""
        self._check_fault("mark_failed")
        self._write(
            "UPDATE uploads SET state=?, last_error=?, next_attempt_at=? WHERE path=? AND state=?",
            (FAILED if permanent else PENDING, error, next_attempt_at, path, UPLOADING),
        )

    def mark_object_failed(self, path: str, error: str, next_attempt_at: float, counted: bool,
                           give_up: bool) -> None:
        """This object failed: its own retry time and last error; ``counted`` adds one failure; ``give_up``
        makes it 'failed' (no more automatic attempts)."""
        self._check_fault("mark_object_failed")
        self._write(
            "UPDATE uploads SET state=?, last_error=?, next_attempt_at=?, failures=failures+?"
            " WHERE path=? AND state=?",
            (FAILED if give_up else PENDING, error, next_attempt_at, int(counted), path, UPLOADING),
        )

    def release(self, path: str) -> None:
        """An upload cancelled by shutdown: pending again, not counted as an attempt."""
        self._check_fault("release")
        self._write(
            "UPDATE uploads SET state=?, attempts=max(attempts-1, 0) WHERE path=? AND state=?",
            (PENDING, path, UPLOADING),
        )

    def release_stranded(self, paths: Iterable[str]) -> int:
        """Rows a worker claimed and could not finish (an error outside the transfer): pending again."""
        self._check_fault("release_stranded")
        n = 0
        for path in paths:
            n += self._write("UPDATE uploads SET state=? WHERE path=? AND state=?", (PENDING, path, UPLOADING))
        return n

    def mark_abandoned(self, path: str, why: str) -> None:
        self._check_fault("mark_abandoned")
        self._write(
            "UPDATE uploads SET state=?, last_error=? WHERE path=? AND state NOT IN (?,?)",
            (ABANDONED, why, path, UPLOADED, ABANDONED),
        )

    def make_due(self) -> int:
        """Every row waiting for the store (no failure of its own) becomes due now."""
        return self._write("UPDATE uploads SET next_attempt_at=0 WHERE state IN (?,?) AND failures=0", WAITING)

    def retry(self, key: str | None) -> list[UploadRow]:
        """`uploads retry`: re-queue the row whose S3 key or path is ``key`` (pending or failed), or every
        'failed' row when ``key`` is None. Returns the rows re-queued. KeyError: no such row; ValueError: the
        row is in a state that cannot be retried."""
        with self._lock:
            self._begin()
            try:
                params: tuple[str, ...]
                if key is None:
                    where, params = "state=?", (FAILED,)
                else:
                    found = self._conn.execute("SELECT state FROM uploads WHERE s3_key=? OR path=?",
                                               (key, key)).fetchall()
                    if not found:
                        raise KeyError(key)
                    bad = [str(s) for (s,) in found if s not in RETRYABLE]
                    if bad:
                        raise ValueError(f"{key} is {bad[0]}, not failed or pending")
                    where, params = "(s3_key=? OR path=?)", (key, key)
                rows = [UploadRow(*r) for r in self._conn.execute(
                    f"SELECT {_COLUMNS} FROM uploads WHERE {where} ORDER BY start, path", params)]
                self._conn.execute(f"UPDATE uploads SET state=?, failures=0, next_attempt_at=0 WHERE {where}",
                                   (PENDING, *params))
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return rows

    # -- reconciliation (segments LEFT JOIN uploads) ------------------------------------------------------
    def has_segments_table(self) -> bool:
        with self._lock:
            return self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='segments'").fetchone() is not None

    def segments_mark(self) -> tuple[int, str | None]:
        """(highest rowid of segments, its path): where an incremental reconciliation stops."""
        with self._lock:
            row = self._conn.execute(
                "SELECT rowid, path FROM segments WHERE rowid = (SELECT max(rowid) FROM segments)").fetchone()
        return (0, None) if row is None else (int(row[0]), str(row[1]))

    def segment_path_at(self, rowid: int) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT path FROM segments WHERE rowid=?", (rowid,)).fetchone()
        return None if row is None else str(row[0])

    def segment_span(self, path: str) -> tuple[str, float, float] | None:
        """(feed_id, start, end) of the catalog row of an uploaded segment (for its SegmentUploaded event)."""
        with self._lock:
            try:
                row = self._conn.execute('SELECT feed_id, start, "end" FROM segments WHERE path=?',
                                         (path,)).fetchone()
            except sqlite3.OperationalError:
                return None  # a queue without a catalog (tests, tools)
        return None if row is None else (str(row[0]), float(row[1]), float(row[2]))

    def missing_uploads(self, after_rowid: int, up_to_rowid: int) -> list[MissingSegment]:
        """Complete segments with after < rowid <= up_to that have no upload row: one statement. ``+s.state``
        keeps SQLite on the rowid range (not the state index), so an incremental pass costs what it finds."""
        self._check_fault("missing_uploads")
        with self._lock:
            found = self._conn.execute(
                "SELECT s.rowid, s.path, s.camera, s.start, s.size, s.added_at FROM segments s"
                " LEFT JOIN uploads u ON u.path = s.path"
                " WHERE s.rowid > ? AND s.rowid <= ? AND +s.state = 'complete' AND u.path IS NULL"
                " ORDER BY s.rowid", (after_rowid, up_to_rowid)).fetchall()
        return [MissingSegment(int(r[0]), str(r[1]), str(r[2]), float(r[3]), int(r[4]), float(r[5]))
                for r in found]

    def enqueue_reconciled(self, rows: Iterable[tuple[str, str, float, int, str]], now: float) -> int:
        """Queue (path, camera, start, size, s3_key) rows found by reconciliation, flagged check_remote."""
        with self._lock:
            self._begin()
            try:
                n = 0
                for path, camera, start, size, key in rows:
                    n += self._conn.execute(
                        "INSERT INTO uploads(path, camera, start, size, s3_key, state, queued_at, check_remote)"
                        " VALUES (?,?,?,?,?,?,?,1) ON CONFLICT(path) DO NOTHING",
                        (path, camera, start, size, key, PENDING, now)).rowcount
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        return n

    # -- reading ------------------------------------------------------------------------------------------
    def get(self, path: str) -> UploadRow | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM uploads WHERE path=?", (path,))
        return rows[0] if rows else None

    def all(self, state: str | None = None) -> list[UploadRow]:
        if state is not None:
            return self._rows(f"SELECT {_COLUMNS} FROM uploads WHERE state=? ORDER BY start, path", (state,))
        return self._rows(f"SELECT {_COLUMNS} FROM uploads ORDER BY start, path")

    def backlog(self, max_attempts: int | None = None) -> tuple[int, float | None]:
        """(rows still to upload incl. in flight, queued_at of the oldest of them); with ``max_attempts``,
        rows given up ('failed' with that many failures) are not counted."""
        limit = 1 << 62 if max_attempts is None else max_attempts
        with self._lock:
            count, oldest = self._conn.execute(
                "SELECT count(*), min(queued_at) FROM uploads WHERE state IN (?,?) OR (state=? AND failures < ?)",
                (PENDING, UPLOADING, FAILED, limit)).fetchone()
        return int(count), oldest

    def given_up(self, max_attempts: int) -> tuple[int, UploadRow | None, str | None]:
        """(count of rows given up, the oldest of them, the last error of the newest of them)."""
        with self._lock:
            (count,) = self._conn.execute(f"SELECT count(*) FROM uploads WHERE {_GIVEN_UP}",
                                          (max_attempts,)).fetchone()
            if not count:
                return 0, None, None
            oldest = self._conn.execute(f"SELECT {_COLUMNS} FROM uploads WHERE {_GIVEN_UP} ORDER BY start"
                                        " LIMIT 1", (max_attempts,)).fetchone()
            newest = self._conn.execute(f"SELECT last_error FROM uploads WHERE {_GIVEN_UP} ORDER BY start DESC"
                                        " LIMIT 1", (max_attempts,)).fetchone()
        return int(count), UploadRow(*oldest), newest[0]
