"""Opening the catalog file: one place for the connection settings that the catalog and the upload queue share."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

BUSY_TIMEOUT_MS = 5000


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """An autocommit connection in WAL mode. WAL is a property of the file: switch to it only when the file is not
    in WAL yet (the switch needs an exclusive lock and does not wait on busy_timeout, so a reader opening the file
    while the daemon writes must not ask for it)."""
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        try:
            db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    db.execute(f"PRAGMA synchronous = {synchronous}")
    return db
