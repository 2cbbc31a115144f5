"""The catalog: schema, idempotent inserts, totals kept by triggers, range queries, gaps, recovery."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from cctv_daemon.catalog import check as catalog_check
from cctv_daemon.catalog import recovery as catalog_recovery
from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.store import Catalog, SegmentRow, with_gaps
from cctv_daemon.cli.catalog import parse_time
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.core.events import FinishedSegment
from tests.unit.catalog_helpers import files_on_disk, put_segment

T0 = 1_800_000_000.0


@pytest.fixture
def cat(tmp_path: Path, catalog_url: str | None) -> Iterator[Catalog]:
    """The catalog on each backend (SQLite, PostgreSQL, MariaDB: tests/conftest.py catalog_url)."""
    save = tmp_path / "rec"
    catalog = Catalog(save / ".cctv" / "catalog.sqlite3", save, FakeClock(T0 + 86400 * 30), url=catalog_url,
                      node_id="node-a")
    yield catalog
    catalog.close()


def test_schema_version_and_reopen(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    cat = Catalog(save / ".cctv" / "catalog.sqlite3", save)
    assert cat.created
    assert cat.query("SELECT version FROM catalog_schema") == [(2,)]  # an older cctv-daemon refuses it
    again = Catalog(cat.path, cat.save_path)
    assert not again.created
    assert again.query("PRAGMA journal_mode") == [("wal",)]


def test_add_segment_is_idempotent_and_totals_follow_states(cat: Catalog) -> None:
    row = put_segment(cat, "gate", T0, size=500, catalogue=False)
    seg = FinishedSegment("gate", "main", cat.abs(row.path), T0, T0 + 10, 500, "r1")
    cat.add_segment(seg)
    cat.add_segment(seg)
    assert cat.totals() == {"gate": (1, 500)}
    cat.set_state(row.path, "deleting")
    assert cat.totals() == {"gate": (1, 500)}  # the file is still there
    cat.set_state(row.path, "deleted")
    assert cat.totals() == {}
    cat.add_rows([row])  # the file came back (e.g. check --repair): revived
    assert cat.totals() == {"gate": (1, 500)}


def test_range_query_returns_overlapping_segments_only(cat: Catalog) -> None:
    for i in range(10):
        put_segment(cat, "gate", T0 + 10 * i)
        put_segment(cat, "yard", T0 + 10 * i + 3)
    rows = cat.segments(camera="gate", start=T0 + 25, end=T0 + 45)
    assert [r.start for r in rows] == [T0 + 20, T0 + 30, T0 + 40]
    assert {r.camera for r in cat.segments(start=T0, end=T0 + 5)} == {"gate", "yard"}


def test_gaps_between_and_around_segments() -> None:
    def seg(start: float, end: float) -> SegmentRow:
        return SegmentRow(f"c/{start}", "c", "m", start, end, 1)

    rows = [seg(0, 10), seg(11, 20), seg(30, 40), seg(40.5, 50)]
    gaps = with_gaps(rows)
    assert [(g.start, g.end) for g in gaps] == [(20, 30)]  # 10→11 touches within 1.5 s
    gaps = with_gaps(rows, start=-5, end=60)
    assert [(g.start, g.end, g.seconds) for g in gaps] == [(-5, 0, 5), (20, 30, 10), (50, 60, 10)]


def test_parse_time_formats() -> None:
    assert parse_time("20261121T100200Z") == parse_time("2026-11-21T10:02") == parse_time("2026-11-21T10:02Z")
    assert parse_time("2026-11-21T11:02+01:00") == parse_time("2026-11-21T10:02:00")
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("yesterday")


def test_startup_recovery_catalogues_file_left_without_row_and_finishes_deletions(cat: Catalog) -> None:
    old = put_segment(cat, "gate", T0)
    newest = put_segment(cat, "gate", T0 + 86400)
    orphan = put_segment(cat, "gate", T0 + 86400 + 10, size=777, catalogue=False)  # crash before insert
    deleter = SegmentDeleter(cat)
    cat.set_state(old.path, "deleting")  # crash after the mark
    added = catalog_recovery.startup_recover(cat, deleter, cat.save_path / ".cctv", ["gate"])
    assert added == 1
    got = cat.get(orphan.path)
    assert got is not None and got.size == 777 and got.start == orphan.start
    assert files_on_disk(cat.save_path) == {newest.path, orphan.path}
    assert cat.get(old.path) is not None and cat.get(old.path).state == "deleted"  # type: ignore[union-attr]
    assert catalog_check.reconcile(cat, cat.save_path / ".cctv", FakeClock(T0 + 86400 * 30)) == []


def test_rebuild_from_files_and_foreign_files_untouched(cat: Catalog, tmp_path: Path) -> None:
    rows = [put_segment(cat, "gate", T0 + 10 * i, catalogue=False) for i in range(5)]
    rows += [put_segment(cat, "yard_2", T0 + 10 * i, feed="f_1", catalogue=False) for i in range(3)]
    foreign = [cat.save_path / "notes.txt", cat.save_path / "gate" / "holiday.mp4",
               cat.save_path / "gate" / "2027-01-01" / "other_x_20270101T000000Z_20270101T000010Z.mp4"]
    for f in foreign:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("not ours")
    assert catalog_recovery.rebuild(cat, cat.save_path / ".cctv") == 8
    got = {r.path: r for r in cat.segments()}
    assert set(got) == {r.path for r in rows}
    assert got[rows[-1].path].feed_id == "f_1" and got[rows[-1].path].camera == "yard_2"
    problems = catalog_check.reconcile(cat, cat.save_path / ".cctv", FakeClock(T0 + 86400 * 30))
    assert problems == []
    assert all(f.exists() for f in foreign)


def test_check_finds_and_repairs_each_problem(cat: Catalog) -> None:
    state = cat.save_path / ".cctv"
    a = put_segment(cat, "gate", T0)
    b = put_segment(cat, "gate", T0 + 10)
    c = put_segment(cat, "gate", T0 + 20, catalogue=False)
    cat.abs(a.path).unlink()
    cat.abs(b.path).write_bytes(b"x" * 3)
    clock = FakeClock(T0 + 86400 * 30)
    kinds = {(p.kind, p.path) for p in catalog_check.reconcile(cat, state, clock)}
    assert kinds == {("row-without-file", a.path), ("size-mismatch", b.path), ("file-without-row", c.path)}
    left = catalog_check.repair(cat, state, catalog_check.reconcile(cat, state, clock), None)
    assert left == []
    assert catalog_check.reconcile(cat, state, clock) == []
    assert cat.get(a.path).state == "missing"  # type: ignore[union-attr]
    assert cat.get(b.path).size == 3  # type: ignore[union-attr]
