"""Retention policies with an injected clock and free-space function; real SQLite and real files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.retention import Limits, Retention
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core.clock import FakeClock
from tests.support.daemon import wait_for
from tests.unit.catalog_helpers import files_on_disk, make_uploads_table, put_segment, set_upload

T0 = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 3600)


@pytest.fixture
def cat(tmp_path: Path, clock: FakeClock) -> Catalog:
    return Catalog(tmp_path / "rec" / ".cctv" / "catalog.sqlite3", tmp_path / "rec", clock)


def step_wall(clock: FakeClock, seconds: float) -> None:
    """A wall-clock step (NTP): the wall clock moves, the monotonic clock does not (injected-clock fault)."""
    clock._wall += seconds


def retention(cat: Catalog, clock: FakeClock, **kw: object) -> Retention:
    free = kw.pop("free_space", lambda _p: 10**12)
    ack = kw.pop("ack_file", None)
    return Retention(cat, SegmentDeleter(cat), Limits(**kw), clock, free_space=free,  # type: ignore[arg-type]
                     ack_file=ack)  # type: ignore[arg-type]


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


def test_floor_that_deleting_everything_cannot_meet_deletes_nothing(cat: Catalog, clock: FakeClock) -> None:
    """Finding 14: a floor above free space + all our footage (the 1 GB default on a small SD card) used to delete
    every segment the moment it was finished. Now it deletes nothing and says so loudly, once."""
    segs = [put_segment(cat, "gate", T0 + 10 * i, size=10) for i in range(3)]
    r = retention(cat, clock, min_free_bytes=100, free_space=lambda _p: 0)
    assert r.enforce() == 0
    assert files_on_disk(cat.save_path) == {s.path for s in segs}
    st = r.status()
    assert st["shortOfSpace"] is True and st["floorUnreachable"] is True
    assert any("minFreeDiskGB unreachable" in w for w in st["warnings"])  # type: ignore[union-attr]
    put_segment(cat, "gate", T0 + 100, size=10)
    assert r.enforce() == 0


def test_disk_full_of_our_own_footage_is_pruned(cat: Catalog, clock: FakeClock) -> None:
    """A floor that pruning can meet is not an error: oldest footage goes."""
    disk = 1000

    def free(_p: Path) -> int:
        return disk - cat.total_bytes()

    segs = [put_segment(cat, "gate", T0 + 10 * i, size=100) for i in range(10)]
    r = retention(cat, clock, min_free_bytes=250, free_space=free)
    assert r.enforce() == 3
    assert files_on_disk(cat.save_path) == {s.path for s in segs[3:]}
    assert r.status()["floorUnreachable"] is False


def test_per_camera_cap_only_touches_that_camera(cat: Catalog, clock: FakeClock) -> None:
    gate = [put_segment(cat, "gate", T0 + 100 + 10 * i, size=100) for i in range(5)]
    yard = [put_segment(cat, "yard", T0 + 10 * i, size=100) for i in range(5)]  # older, but uncapped
    r = retention(cat, clock, per_camera_bytes={"gate": 250})
    assert r.enforce() == 3
    assert files_on_disk(cat.save_path) == {s.path for s in gate[3:] + yard}


def test_size_cap_applies_to_uploaded_footage_only(cat: Catalog, clock: FakeClock) -> None:
    """Finding 3: with S3, a size cap deleted never-uploaded footage (the oldest) although uploaded footage could
    go. Now: uploaded first (oldest first), and not-uploaded footage may exceed the cap, with a warning."""
    make_uploads_table(cat)
    segs = [put_segment(cat, "gate", T0 + 10 * i, size=100) for i in range(6)]
    set_upload(cat, segs[0], "pending")
    set_upload(cat, segs[1], "failed")
    set_upload(cat, segs[3], "uploaded")
    set_upload(cat, segs[5], "uploaded")
    # segs[2] and segs[4] have no uploads row at all (not queued yet)
    r = retention(cat, clock, total_bytes=300, prefer_uploaded=True)
    assert r.enforce() == 2
    assert files_on_disk(cat.save_path) == {segs[i].path for i in (0, 1, 2, 4)}
    st = r.status()
    assert st["lost"] == {"count": 0, "bytes": 0, "oldest": None}
    assert any("not uploaded yet" in w for w in st["warnings"])  # type: ignore[union-attr]
    states = dict(cat.query("SELECT path, state FROM uploads"))
    assert states[segs[0].path] == "pending" and states[segs[1].path] == "failed"
    # once they are uploaded, the cap catches up and the warning goes
    for i in (0, 1, 2, 4):
        set_upload(cat, segs[i], "uploaded")
    assert r.enforce() == 1
    assert r.status()["warnings"] == []


def test_age_rule_keeps_footage_not_uploaded(cat: Catalog, clock: FakeClock) -> None:
    """Finding 3: the age rule ignored upload state. Now it deletes only uploaded footage (with S3)."""
    make_uploads_table(cat)
    clock.advance(10 * 86400)
    old = [put_segment(cat, "gate", T0 + 10 * i, size=100) for i in range(4)]
    set_upload(cat, old[1], "uploaded")
    set_upload(cat, old[2], "pending")
    r = retention(cat, clock, max_age_s=86400, prefer_uploaded=True)
    assert r.enforce() == 1
    assert files_on_disk(cat.save_path) == {old[i].path for i in (0, 2, 3)}
    assert r.status()["lost"]["count"] == 0  # type: ignore[index]


def test_retention_strict_deletes_by_age_regardless_and_counts_lost(cat: Catalog, clock: FakeClock) -> None:
    make_uploads_table(cat)
    clock.advance(10 * 86400)
    old = [put_segment(cat, "gate", T0 + 10 * i, size=100) for i in range(3)]
    set_upload(cat, old[1], "uploaded")
    r = retention(cat, clock, max_age_s=86400, prefer_uploaded=True, strict=True)
    assert r.enforce() == 3
    assert files_on_disk(cat.save_path) == set()
    assert r.status()["lost"] == {"count": 2, "bytes": 200, "oldest": T0}


def test_floor_deletes_uploaded_first_then_the_rest_as_lost(cat: Catalog, clock: FakeClock) -> None:
    """Not-uploaded footage goes only when the free-space floor forces it; each is counted as lost, and the
    count survives a restart (it is in the rows' reasons)."""
    make_uploads_table(cat)
    disk = 1000

    def free(_p: Path) -> int:
        return disk - cat.total_bytes()

    segs = [put_segment(cat, "gate", T0 + 10 * i, size=100) for i in range(8)]
    set_upload(cat, segs[6], "uploaded")
    set_upload(cat, segs[7], "uploaded")
    r2 = retention(cat, clock, min_free_bytes=500, free_space=free, prefer_uploaded=True)
    assert r2.enforce() == 3
    assert files_on_disk(cat.save_path) == {s.path for s in segs[1:6]}  # both uploaded, then the oldest one
    assert r2.status()["lost"] == {"count": 1, "bytes": 100, "oldest": T0}
    again = retention(cat, clock, prefer_uploaded=True)
    again._load_lost()  # what the retention thread does first after a restart
    assert again.status()["lost"] == {"count": 1, "bytes": 100, "oldest": T0}


def test_lost_footage_is_listed_until_acknowledged(cat: Catalog, clock: FakeClock, tmp_path: Path) -> None:
    """Footage lost is shown by `status` until acknowledged (`ack-lost`), across restarts; a later loss is shown
    again. The rows themselves stay (state deleted, reason marked)."""
    make_uploads_table(cat)
    disk = 1000
    ack = tmp_path / "lost-ack.json"

    def free(_p: Path) -> int:
        return disk - cat.total_bytes()

    segs = [put_segment(cat, "gate", T0 + 10 * i, size=100) for i in range(6)]
    r = retention(cat, clock, min_free_bytes=500, free_space=free, prefer_uploaded=True, ack_file=ack)
    assert r.enforce() == 1
    assert r.status()["lost"]["count"] == 1
    clock.advance(5)
    assert r.acknowledge_lost() == {"count": 1, "bytes": 100, "oldest": T0}
    assert r.status()["lost"] == {"count": 0, "bytes": 0, "oldest": None}
    again = retention(cat, clock, prefer_uploaded=True, ack_file=ack)
    again._load_lost()  # a restart: the acknowledgement holds
    assert again.status()["lost"]["count"] == 0
    clock.advance(5)
    put_segment(cat, "gate", T0 + 100, size=100)
    r2 = retention(cat, clock, min_free_bytes=500, free_space=free, prefer_uploaded=True, ack_file=ack)
    assert r2.enforce() == 1
    r3 = retention(cat, clock, prefer_uploaded=True, ack_file=ack)
    r3._load_lost()
    assert r3.status()["lost"] == {"count": 1, "bytes": 100, "oldest": segs[1].start}
    assert cat.query("SELECT COUNT(*) FROM segments WHERE state = 'deleted'")[0][0] == 2


def test_tick_only_wakes_the_retention_thread(cat: Catalog, clock: FakeClock) -> None:
    """Finding 6: the prune ran on the main loop (tick) and before readiness. tick() now only wakes the
    retention thread: it returns at once even while a prune is running."""
    r = retention(cat, clock, total_bytes=100)
    put_segment(cat, "gate", T0, size=80)
    put_segment(cat, "gate", T0 + 10, size=80)
    r.start()
    try:
        wait_for(lambda: cat.total_bytes() == 80, 10, "first prune on the retention thread")
        put_segment(cat, "gate", T0 + 20, size=80)
        with r._lock:  # a prune in progress (the thread holds the lock)
            t0 = time.monotonic()
            clock.advance(60)
            r.tick()
            assert time.monotonic() - t0 < 0.05
            assert cat.total_bytes() == 160
        wait_for(lambda: cat.total_bytes() == 80, 10, "timed prune on the retention thread")
        assert r._thread is not None and r._thread.name == "retention"
    finally:
        r.stop()


def test_forward_clock_step_never_widens_the_age_rule(cat: Catalog, clock: FakeClock) -> None:
    """Finding 10: NTP stepping the wall clock forward by days made the age rule delete everything it then
    thought old. Now a forward step is absorbed: what goes is what would have gone without it."""
    clock.advance(3 * 86400)
    now = clock.time()
    segs = [put_segment(cat, "gate", now - 86400 * d - 100) for d in (5, 2, 1, 0.5)]  # ages 5 d .. 12 h
    r = retention(cat, clock, max_age_s=3 * 86400)
    assert r.enforce() == 1  # the 5-day-old one
    step_wall(clock, 10 * 86400)  # NTP: +10 days in one go
    assert r.enforce() == 0
    assert files_on_disk(cat.save_path) == {s.path for s in segs[1:]}
    assert r.status()["clockStepS"] == 10 * 86400
    clock.advance(86400 + 200)  # a day passes for real: the 2-day-old one is now 3 days old
    assert r.enforce() == 1
    assert files_on_disk(cat.save_path) == {s.path for s in segs[2:]}
    step_wall(clock, -10 * 86400)  # the step is undone: no double counting
    assert r.enforce() == 0
    assert r.status()["clockStepS"] == 0
    step_wall(clock, -86400)  # a backward step is followed at once (deletes less)
    clock.advance(86400)
    assert r.enforce() == 0


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


def test_ack_lost_command_without_a_daemon(tmp_path: Path, clock: FakeClock) -> None:
    """`cctv-daemon ack-lost` with no daemon running writes the acknowledgement the daemon reads at start; before
    anything was recorded it says so and creates nothing."""
    import json

    from tests.support.daemon import run_cli

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"cameras": [{"cameraName": "gate", "source": "test"}],
                               "storageConfig": {"savePath": str(tmp_path / "rec")}}))
    first = run_cli("ack-lost", "--config", str(cfg))
    assert first.returncode == 0 and "nothing recorded yet" in first.stderr
    assert not (tmp_path / "rec").exists()
    Catalog(tmp_path / "rec" / ".cctv" / "catalog.sqlite3", tmp_path / "rec", clock).close()
    res = run_cli("ack-lost", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    ack = json.loads((tmp_path / "rec" / ".cctv" / "lost-ack.json").read_text())
    assert abs(ack["acknowledgedAt"] - time.time()) < 60


def test_each_deletion_is_published_with_its_reason_and_whether_footage_was_lost(cat: Catalog,
                                                                                 clock: FakeClock) -> None:
    """SegmentDeleted from the one deletion path (what GET /api/events streams): reason, start/end, uploaded and
    footage_lost (uploads configured and not uploaded); nothing published for a segment it did not delete."""
    from cctv_daemon.core.events import Event, SegmentDeleted

    make_uploads_table(cat)
    clock.advance(10 * 86400)
    old = [put_segment(cat, "gate", T0 + 10 * i, size=100) for i in range(2)]
    set_upload(cat, old[1], "uploaded")
    seen: list[Event] = []
    deleter = SegmentDeleter(cat, publish=seen.append, uploads_configured=True)
    r = Retention(cat, deleter, Limits(max_age_s=86400, prefer_uploaded=True, strict=True), clock,
                  free_space=lambda _p: 10**12)
    assert r.enforce() == 2
    assert deleter.delete_segment(old[0].path, "again") is False
    assert all(isinstance(e, SegmentDeleted) for e in seen) and len(seen) == 2
    by_start = {e.start: e for e in seen if isinstance(e, SegmentDeleted)}
    lost, kept = by_start[T0], by_start[T0 + 10]
    assert (lost.camera, lost.end, lost.size, lost.time) == ("gate", T0 + 10, 100, clock.time())
    assert lost.footage_lost and not lost.uploaded and lost.reason == "retention:age (not uploaded)"
    assert kept.uploaded and not kept.footage_lost and kept.reason == "retention:age"
    # Without uploads configured, nothing deleted is "lost" by this flag (there is no off-site copy to wait for).
    seg = put_segment(cat, "gate", T0 + 100, size=100)
    SegmentDeleter(cat, publish=seen.append).delete_segment(seg.path, "by hand")
    last = seen[-1]
    assert isinstance(last, SegmentDeleted) and not last.footage_lost and last.reason == "by hand"
