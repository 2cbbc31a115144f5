"""Issue 12: a corrupt or unopenable catalog is moved aside (never deleted) and a new one is made (5); read
commands open the catalog read-only and never create anything (9). Real SQLite files."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from cctv_daemon.catalog import recovery as catalog_recovery
from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.store import Catalog
from tests.unit.catalog_helpers import put_segment


def _catalog_with_rows(save: Path, n: int = 3) -> Catalog:
    cat = Catalog.for_state_dir(save / ".cctv", save)
    for i in range(n):
        put_segment(cat, "cam", time.time() - 3600 + 10 * i)
    return cat


def test_garbage_catalog_is_moved_aside_and_rebuilt_from_the_files(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    _catalog_with_rows(save).close()
    db = save / ".cctv" / "catalog.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    garbage = b"this is not a database" * 100
    db.write_bytes(garbage)
    cat = Catalog.for_state_dir(save / ".cctv", save)
    assert cat.moved_aside is not None and cat.moved_aside.parent == save / ".cctv" / "damaged"
    assert cat.moved_aside.read_bytes() == garbage  # kept, byte for byte
    assert cat.created
    added = catalog_recovery.startup_recover(cat, SegmentDeleter(cat), save / ".cctv", ["cam"])
    assert added == 3 and len(cat.segments()) == 3


def test_catalog_with_damaged_pages_is_moved_aside(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    cat = _catalog_with_rows(save, 200)
    cat.query("PRAGMA wal_checkpoint(TRUNCATE)")
    cat.close()
    db = save / ".cctv" / "catalog.sqlite3"
    data = bytearray(db.read_bytes())
    page = 4096
    for off in range(2 * page, len(data), page):  # keep the header page, scribble over the b-tree pages
        data[off:off + 64] = b"\xa5" * 64
    db.write_bytes(bytes(data))
    cat = Catalog.for_state_dir(save / ".cctv", save)
    assert cat.moved_aside is not None and cat.moved_aside.exists()
    cat.add_rows([])  # usable


def test_busy_catalog_is_not_moved_aside(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    _catalog_with_rows(save).close()
    db = save / ".cctv" / "catalog.sqlite3"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        from cctv_daemon.catalog import sqlite_db

        old = sqlite_db.BUSY_TIMEOUT_MS
        sqlite_db.BUSY_TIMEOUT_MS = 200
        try:
            Catalog.for_state_dir(save / ".cctv", save)
        except sqlite3.OperationalError:
            pass
        finally:
            sqlite_db.BUSY_TIMEOUT_MS = old
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not (save / ".cctv" / "damaged").exists()


def test_read_only_open_of_a_missing_catalog_creates_nothing(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    cat = Catalog.for_state_dir(save / ".cctv", save, read_only=True)
    assert cat.segments() == [] and cat.totals() == {}
    cat.close()
    assert not save.exists()


def test_read_only_open_of_a_closed_wal_catalog_writes_no_file(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    _catalog_with_rows(save).close()
    state = save / ".cctv"
    before = {p.name: p.stat().st_mtime_ns for p in state.iterdir()}
    assert not any(n.endswith(("-wal", "-shm")) for n in before)
    cat = Catalog.for_state_dir(state, save, read_only=True)
    assert len(cat.segments()) == 3
    cat.close()
    assert {p.name: p.stat().st_mtime_ns for p in state.iterdir()} == before


def test_read_only_open_while_a_writer_has_it_open_sees_its_rows(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    writer = _catalog_with_rows(save)
    put_segment(writer, "cam", time.time())
    reader = Catalog.for_state_dir(save / ".cctv", save, read_only=True)
    assert len(reader.segments()) == 4
    reader.close()
    writer.close()
