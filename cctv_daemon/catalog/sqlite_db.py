"""Opening the catalog file: one place for the connection settings that the catalog and the upload queue share."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

BUSY_TIMEOUT_MS = 5000
# Page cache per connection, in KiB. SQLite's default (2 000 KiB) is a cap too, but the cache only fills as the
# file outgrows it: a daemon's RSS then creeps up with every catalogued segment for the first days or weeks of a
# catalog (docs/benchmarks.md, "Memory for the life of a run"). A smaller cap is reached within minutes and holds
# the hot pages (the newest rows and index leaves per camera, the totals); other reads come from the OS's cache.
CACHE_KIB = 512
# Size the -wal file is truncated back to once a checkpoint has emptied it. Without it the file keeps its high-water
# size for ever (~4 MB: autocheckpoint runs at 1 000 pages of 4 KiB), on the recording disk. 1 MiB: small next to
# the free-space headroom a full disk is pruned back to (disk_space.MIN_HEADROOM_BYTES, 4 MiB), and large enough
# that the WAL keeps allocated blocks for a few hundred page writes: the catalog's next commits after a checkpoint
# reuse them and need no new disk block, which with the 1 MiB space reserve keeps a full disk's prune writable.
# The file still grows up to the autocheckpoint between checkpoints; it no longer stays there.
JOURNAL_SIZE_LIMIT = 1024 * 1024


def configure(db: sqlite3.Connection) -> sqlite3.Connection:
    """The settings every connection to a catalog gets (read-write, read-only and in-memory alike)."""
    db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    return db


SYNCHRONOUS = "FULL"  # every commit fsynced (catalog/engine.py relaxes it for the rows recovery can rebuild)


def connect(path: Path, synchronous: str = SYNCHRONOUS) -> sqlite3.Connection:
    """An autocommit connection in WAL mode. WAL is a property of the file: switch to it only when the file is not
    in WAL yet (the switch needs an exclusive lock and does not wait on busy_timeout, so a reader opening the file
    while the daemon writes must not ask for it)."""
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    configure(db)
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
    db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")  # per connection: every writer sets it
    return db


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open an existing catalog without writing anything: no -wal/-shm is created (as root, `sudo cctv-daemon
    segments`, they would be root-owned and lock the service user out). A plain `mode=ro` connection creates both on
    a WAL file, so: when a -wal and -shm exist (a daemon has it open, or was killed), use them read-only; when none
    exists (closed cleanly: everything is in the main file), open it immutable; when only one exists, read a private
    copy."""
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    uri = "file:" + quote(str(path.resolve()))
    if wal.exists() and shm.exists():
        db = configure(sqlite3.connect(uri + "?mode=ro", uri=True, check_same_thread=False, isolation_level=None,
                                       timeout=BUSY_TIMEOUT_MS / 1000))
    elif not wal.exists() and not shm.exists():
        db = configure(sqlite3.connect(uri + "?immutable=1", uri=True, check_same_thread=False,
                                       isolation_level=None))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="cctv-catalog-"))
        copy = tmp / path.name
        shutil.copyfile(path, copy)
        if wal.exists():
            shutil.copyfile(wal, Path(f"{copy}-wal"))
        db = configure(sqlite3.connect(str(copy), check_same_thread=False, isolation_level=None))
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the copy's -wal before it is unlinked
        shutil.rmtree(tmp, ignore_errors=True)  # the open connection keeps the (unlinked) files
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return db


def connect_memory() -> sqlite3.Connection:
    """An empty private database (what a read command sees when no catalog exists yet)."""
    return configure(sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None))


# SQLite result codes that mean "this file is damaged or unusable by us" (not "busy" or "disk full"):
# SQLITE_READONLY, SQLITE_CORRUPT, SQLITE_CANTOPEN, SQLITE_NOTADB (primary codes; extended ones are masked).
_DAMAGE_CODES = {8, 11, 14, 26}


def is_damage(exc: sqlite3.DatabaseError, path: Path) -> bool:
    """Should the catalog file at `path` be moved aside after this error at opening?"""
    if not path.exists():
        return False  # nothing to move aside: the folder itself is the problem
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (int(code) & 0xFF) in _DAMAGE_CODES
    text = str(exc).lower()
    return any(k in text for k in ("malformed", "not a database", "quick_check", "unable to open", "readonly"))
