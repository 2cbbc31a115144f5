"""Retention policies with an injected clock and free-space function; real SQLite and real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.retention import Limits, Retention
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core.clock import FakeClock
from tests.unit.catalog_helpers import files_on_disk, make_uploads_table, put_segment, set_upload

T0 = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 3600)


@pytest.fixture
def cat(tmp_path: Path, clock: FakeClock) -> Catalog:
    return Catalog(tmp_path / "rec" / ".cctv" / "catalog.sqlite3", tmp_path / "rec", clock)


def retention(cat: Catalog, clock: FakeClock, **kw: object) -> Retention:
    free = kw.pop("free_space", lambda _p: 10**12)
    return Retention(cat, SegmentDeleter(cat), Limits(**kw), clock, free_space=free)  # type: ignore[arg-type]


def test_total_cap_deletes_oldest_across_cameras(cat: Catalog, clock: FakeClock) -> None:
    gate = [put_segment(cat, "gate", T0 + 10 * i, size=100) for i in range(5)]
    yard = [put_segment(cat, "yard", T0 + 10 * i + 5, size=100) for i in range(5)]
    r = retention(cat, clock, total_bytes=650)
    assert r.enforce() == 4
    assert cat.total_bytes() == 600
    # gate 0, yard 0, gate 1, yard 1 are the oldest four across both cameras
    assert files_on_disk(cat.save_path) == {s.path for s in gate[2:] + yard[2:]}
    assert r.status()["deleted"] == 4 and r.status()["bytes"] == 600


def test_never_exceeds_by_more_than_one_segment_per_camera(cat: Catalog, clock: FakeClock) -> None:
    r = retention(cat, clock, total_bytes=1000)
    for i in range(40):
        for cam in ("a", "b", "c"):
            put_segment(cat, cam, T0 + 10 * i, size=90 + i)
        # between checks, at most one new segment per camera has arrived
        assert cat.total_bytes() <= 1000 + 3 * (90 + i)
        r.enforce()
        assert cat.total_bytes() <= 1000
        deleted = [row.start for row in cat.segments(states=("deleted",))]
        kept = [row.start for row in cat.segments()]
        assert not deleted or max(deleted) <= min(kept)  # oldest went first
    assert r.status()["deleted"] > 60


def test_retention_days(cat: Catalog, clock: FakeClock) -> None:
    clock.advance(10 * 86400)
    now = clock.time()
    old = put_segment(cat, "gate", now - 3 * 86400 - 20)
    edge = put_segment(cat, "gate", now - 3 * 86400 - 5, duration=10)  # ends inside the window: kept
    new = put_segment(cat, "yard", now - 100)
    r = retention(cat, clock, max_age_s=3 * 86400)
    assert r.enforce() == 1
    assert files_on_disk(cat.save_path) == {edge.path, new.path}
    clock.advance(10)
    r.enforce()
    assert files_on_disk(cat.save_path) == {new.path}
    assert old.path not in files_on_disk(cat.save_path)


def test_min_free_space(cat: Catalog, clock: FakeClock) -> None:
    disk = 10_000

    def free(_p: Path) -> int:
        return disk - cat.total_bytes()

    for i in range(8):
        put_segment(cat, "gate", T0 + 10 * i, size=1000)
    r = retention(cat, clock, min_free_bytes=5_500, free_space=free)
    assert r.enforce() == 4  # 2000 free → needs 5500 → delete 4 oldest
    assert free(cat.save_path) == 6000
    assert not r.status()["shortOfSpace"]


def test_min_free_space_unreachable_is_reported_not_looped(cat: Catalog, clock: FakeClock) -> None:
    put_segment(cat, "gate", T0, size=10)
    r = retention(cat, clock, min_free_bytes=100, free_space=lambda _p: 0)
    assert r.enforce() == 1
    assert r.status()["shortOfSpace"] is True
    assert r.enforce() == 0


def test_per_camera_cap_only_touches_that_camera(cat: Catalog, clock: FakeClock) -> None:
    gate = [put_segment(cat, "gate", T0 + 100 + 10 * i, size=100) for i in range(5)]
    yard = [put_segment(cat, "yard", T0 + 10 * i, size=100) for i in range(5)]  # older, but uncapped
    r = retention(cat, clock, per_camera_bytes={"gate": 250})
    assert r.enforce() == 3
    assert files_on_disk(cat.save_path) == {s.path for s in gate[3:] + yard}


def test_not_yet_uploaded_go_last_and_are_counted(cat: Catalog, clock: FakeClock) -> None:
    make_uploads_table(cat)
    segs = [put_segment(cat, "gate", T0 + 10 * i, size=100) for i in range(6)]
    set_upload(cat, segs[0], "pending")
    set_upload(cat, segs[1], "failed")
    set_upload(cat, segs[3], "uploaded")
    set_upload(cat, segs[5], "uploaded")
    # segs[2] and segs[4] have no uploads row at all (not queued yet)
    r = retention(cat, clock, total_bytes=300, prefer_uploaded=True)
    assert r.enforce() == 3
    # the two uploaded go first (although newer), then the oldest not uploaded
    assert files_on_disk(cat.save_path) == {segs[1].path, segs[2].path, segs[4].path}
    assert r.status()["unuploadedDeleted"] == 1
    states = dict(cat.query("SELECT path, state FROM uploads"))
    assert states[segs[0].path] == "abandoned"
    assert states[segs[3].path] == "uploaded" and states[segs[1].path] == "failed"


def test_tick_checks_on_a_timer(cat: Catalog, clock: FakeClock) -> None:
    r = retention(cat, clock, total_bytes=100)
    r.start()
    r.tick()
    put_segment(cat, "gate", T0, size=80)
    put_segment(cat, "gate", T0 + 10, size=80)
    r.tick()  # not due yet
    assert cat.total_bytes() == 160
    clock.advance(60)
    r.tick()
    assert cat.total_bytes() == 80


def test_deletion_removes_empty_folders_and_keeps_foreign_files(cat: Catalog, clock: FakeClock) -> None:
    clock.advance(30 * 86400)
    a = put_segment(cat, "gate", T0)
    b = put_segment(cat, "yard", T0)
    foreign = cat.abs(b.path).parent / "readme.txt"
    foreign.write_text("mine")
    d = SegmentDeleter(cat)
    assert d.delete_segment(a.path, "test")
    assert d.delete_segment(b.path, "test")
    assert not d.delete_segment(a.path, "again")  # already deleted
    assert not (cat.save_path / "gate").exists()
    assert foreign.exists()
