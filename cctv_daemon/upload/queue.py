"""The durable upload queue: an upload's life in SQL (table ``uploads`` of {state_dir}/catalog.sqlite3).

States: ``pending`` -> ``uploading`` -> ``uploaded``; a transient failure sends the row back to ``pending``
with a later ``next_attempt_at``; a permanent one (bad credentials, missing bucket) to ``failed`` (retried at
the backoff cap); ``abandoned`` when the local file is gone before it was uploaded (retention, an operator).
Rows found in ``uploading`` at startup belong to a killed run and go back to ``pending``.

Durability: ``synchronous=FULL`` so that a queued row survives a power cut, not only a crash of the process
(one small transaction per segment; the cost is one fsync per segment, negligible next to writing it).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cctv_daemon.catalog import sqlite_db

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
    uploaded_at REAL
);
CREATE INDEX IF NOT EXISTS uploads_state_start ON uploads(state, start);
"""

PENDING = "pending"
UPLOADING = "uploading"
UPLOADED = "uploaded"
FAILED = "failed"
ABANDONED = "abandoned"
WAITING = (PENDING, FAILED)  # rows that still have to be uploaded


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


_COLUMNS = ", ".join(UploadRow.__dataclass_fields__)


def connect(db_path: Path) -> sqlite3.Connection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_db.connect(db_path, synchronous="FULL")


class UploadQueue:
    """Thread-safe (one connection behind a lock); every method is one committed transaction."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._conn = connect(db_path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            cur = self._conn.execute(sql, params)
            return cur.rowcount

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[UploadRow]:
        with self._lock:
            return [UploadRow(*r) for r in self._conn.execute(sql, params).fetchall()]

    # -- queueing ---------------------------------------------------------------------------------------
    def enqueue(self, path: str, camera: str, start: float, size: int, s3_key: str, now: float) -> bool:
        """Queue a finished segment (committed when this returns); False when it was queued already."""
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
        return self._write("UPDATE uploads SET state=? WHERE state=?", (PENDING, UPLOADING))

    def claim(self, now: float, exclude: tuple[str, ...] = ()) -> UploadRow | None:
        """The oldest waiting row that is due, marked 'uploading' (attempts + 1); None when there is none."""
        marks = ",".join("?" * len(exclude))
        skip = f" AND path NOT IN ({marks})" if exclude else ""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                found = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM uploads WHERE state IN (?,?) AND next_attempt_at <= ?{skip}"
                    " ORDER BY start, path LIMIT 1",
                    (*WAITING, now, *exclude),
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
                self._conn.execute("ROLLBACK")
                raise
        return UploadRow(**{**row.__dict__, "state": UPLOADING, "attempts": row.attempts + 1})

    # -- outcomes -------------------------------------------------------------------------------------------
    def mark_uploaded(self, path: str, etag: str, sha256: str, now: float) -> None:
        self._write(
            "UPDATE uploads SET state=?, etag=?, sha256=?, uploaded_at=?, last_error=NULL, next_attempt_at=0"
            " WHERE path=?",
            (UPLOADED, etag, sha256, now, path),
        )

    def mark_failed(self, path: str, permanent: bool, error: str, next_attempt_at: float) -> None:
        """Back in the queue for later; a row retention abandoned meanwhile stays abandoned."""
        self._write(
            "UPDATE uploads SET state=?, last_error=?, next_attempt_at=? WHERE path=? AND state=?",
            (FAILED if permanent else PENDING, error, next_attempt_at, path, UPLOADING),
        )

    def release(self, path: str) -> None:
        """An upload cancelled by shutdown: pending again, not counted as an attempt."""
        self._write(
            "UPDATE uploads SET state=?, attempts=max(attempts-1, 0) WHERE path=? AND state=?",
            (PENDING, path, UPLOADING),
        )

    def mark_abandoned(self, path: str, why: str) -> None:
        self._write(
            "UPDATE uploads SET state=?, last_error=? WHERE path=? AND state NOT IN (?,?)",
            (ABANDONED, why, path, UPLOADED, ABANDONED),
        )

    def make_due(self) -> int:
        """Every waiting row becomes due now (the store answers again: drain the backlog at full speed)."""
        return self._write("UPDATE uploads SET next_attempt_at=0 WHERE state IN (?,?)", WAITING)

    # -- reading ------------------------------------------------------------------------------------------
    def get(self, path: str) -> UploadRow | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM uploads WHERE path=?", (path,))
        return rows[0] if rows else None

    def all(self) -> list[UploadRow]:
        return self._rows(f"SELECT {_COLUMNS} FROM uploads ORDER BY start, path")

    def backlog(self) -> tuple[int, float | None]:
        """(rows still to upload incl. in flight, queued_at of the oldest of them)."""
        with self._lock:
            count, oldest = self._conn.execute(
                "SELECT count(*), min(queued_at) FROM uploads WHERE state IN (?,?,?)", (*WAITING, UPLOADING)
            ).fetchone()
        return int(count), oldest
