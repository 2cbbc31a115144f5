"""Disk-space facts retention and the catalog need: free and total bytes, "is this error a full disk?", the head
room that a full disk is pruned back to, and a small reserve file that keeps the catalog writable on a full disk.

The reserve: on a disk filled to the last byte, even marking a row 'deleting' (a WAL append) can fail with
"database or disk is full", so nothing could be deleted to make room. `{stateDir}/space-reserve` (1 MiB) is
kept while there is room and released at the start of every full-disk prune, so the catalog can always record
the deletions that make room; it is made again once the disk has room."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

import structlog

log = structlog.get_logger("cctv_daemon.retention")

MIB = 1024 * 1024
RESERVE_BYTES = 1 * MIB
RESERVE_NAME = "space-reserve"
MIN_HEADROOM_BYTES = 4 * MIB  # a full disk is pruned back to at least this much free space
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SQLITE_FULL = 13


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def disk_total(path: Path) -> int:
    return shutil.disk_usage(path).total


def is_disk_full(exc: BaseException) -> bool:
    """A full disk (or quota), as an OSError or as SQLite's "database or disk is full"."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    if isinstance(orig, BaseException):
        exc = orig
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return (code is not None and code & 0xFF == _SQLITE_FULL) or "disk is full" in str(exc)
    return False


def headroom(totals: dict[str, tuple[int, int]]) -> int:
    """Free space a full disk is pruned back to: room for two segments of every camera (by their average size)."""
    per_camera = sum(2 * (b // n) for n, b in totals.values() if n > 0)
    return max(MIN_HEADROOM_BYTES, per_camera)


class SpaceReserve:
    def __init__(self, state_dir: Path, size: int = RESERVE_BYTES) -> None:
        self.path = state_dir / RESERVE_NAME
        self.size = size

    def release(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("space_reserve_not_released", path=str(self.path), error=str(exc))
            return False
        return True

    def ensure(self, free: int) -> None:
        """(Re)make the reserve file when the disk has room for it twice over."""
        try:
            if self.path.exists() and self.path.stat().st_size >= self.size:
                return
            if free < 2 * self.size:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb") as f:
                f.write(b"\0" * self.size)  # real blocks: a sparse file would reserve nothing
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if not is_disk_full(exc):
                log.warning("space_reserve_not_made", path=str(self.path), error=str(exc))
            try:
                self.path.unlink()
            except OSError:
                pass
