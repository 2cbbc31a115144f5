"""Issue 12, finding 16 (RSS per segment): every SQLite connection the daemon or a read command opens to the catalog
has its page cache capped at sqlite_db.CACHE_KIB, whichever way it is opened (read-write, read-only with a -wal,
immutable, a private copy, in memory, the upload queue's). SQLite's default cap (2 000 KiB per connection) is only
reached once the catalog file outgrows it, so the daemon's RSS crept up with every segment for days. Real SQLite."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.catalog import sqlite_db
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.upload.queue import UploadQueue
from tests.unit.catalog_helpers import put_segment


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[sqlite3.Connection]]:
    """Every connection made through the sqlite3 module while the test runs (either of its two names)."""
    made: list[sqlite3.Connection] = []
    real = sqlite3.dbapi2.connect

    def spy(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = real(*args, **kwargs)
        made.append(db)
        return db

    monkeypatch.setattr(sqlite3, "connect", spy)
    monkeypatch.setattr(sqlite3.dbapi2, "connect", spy)
    yield made


def _cache_kib(db: sqlite3.Connection) -> int:
    value = int(db.execute("PRAGMA cache_size").fetchone()[0])
    return -value if value < 0 else value * int(db.execute("PRAGMA page_size").fetchone()[0]) // 1024


def _assert_all_capped(opened: list[sqlite3.Connection], before: int) -> None:
    assert len(opened) > before, "this open made no connection"
    live = [db for db in opened if _is_open(db)]
    assert live and {_cache_kib(db) for db in live} == {sqlite_db.CACHE_KIB}


def _written(save: Path) -> Catalog:
    cat = Catalog.for_state_dir(save / ".cctv", save)
    put_segment(cat, "cam", time.time())
    return cat


def _each_open(tmp: Path) -> Iterator[tuple[str, Callable[[Path], list[Any]]]]:
    """(what, open it in a fresh folder, returning everything to close, last opened first)."""
    yield "missing, read-only (in memory)", lambda save: [Catalog.for_state_dir(save / ".cctv", save, read_only=True)]
    yield "read-write", lambda save: [_written(save)]
    yield "upload queue", lambda save: [UploadQueue(_written(save).path)]

    def ro_beside_writer(save: Path) -> list[Any]:  # -wal and -shm exist: opened mode=ro
        writer = _written(save)
        return [Catalog.for_state_dir(save / ".cctv", save, read_only=True), writer]

    def ro_closed(save: Path) -> list[Any]:  # closed cleanly: opened immutable
        _written(save).close()
        return [Catalog.for_state_dir(save / ".cctv", save, read_only=True)]

    def ro_copy(save: Path) -> list[Any]:  # a -wal without its -shm: read from a private copy
        cat = _written(save)
        cat.close()
        Path(f"{cat.path}-wal").write_bytes(b"")
        return [Catalog.for_state_dir(save / ".cctv", save, read_only=True)]

    yield "read-only beside a writer", ro_beside_writer
    yield "read-only, closed cleanly", ro_closed
    yield "read-only copy", ro_copy


@pytest.mark.parametrize("case", [name for name, _ in _each_open(Path())])
def test_every_catalog_connection_has_its_page_cache_capped(case: str, tmp_path: Path,
                                                           opened: list[sqlite3.Connection]) -> None:
    assert 0 < sqlite_db.CACHE_KIB < 2000  # below SQLite's default, or the cap changes nothing
    open_it = dict(_each_open(tmp_path))[case]
    before = len(opened)
    kept = open_it(tmp_path / "rec")
    _assert_all_capped(opened, before)
    for item in kept:
        item.close()


def _is_open(db: sqlite3.Connection) -> bool:
    try:
        db.execute("SELECT 1")
    except sqlite3.ProgrammingError:  # closed
        return False
    return True
