"""Retention's check is woken by a finished segment only when it could act (catalog/retention_gate.py): the room
the last check left under each cap, the free-space floor read at once, the age rule's oldest candidate. Real
SQLite and files; an injected clock and free-space function."""

from __future__ import annotations

from pathlib import Path

import pytest

from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.core.events import FinishedSegment
from tests.support.daemon import wait_for
from tests.unit.catalog_helpers import put_segment
from tests.unit.test_retention import T0, retention


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 3600)


@pytest.fixture
def cat(tmp_path: Path, clock: FakeClock) -> Catalog:
    return Catalog(tmp_path / "rec" / ".cctv" / "catalog.sqlite3", tmp_path / "rec", clock)


def _finished(cat: Catalog, camera: str, start: float, size: int) -> FinishedSegment:
    """A segment catalogued as the hand-off does it (its row first), then its FinishedSegment for retention."""
    row: SegmentRow = put_segment(cat, camera, start, size=size)
    return FinishedSegment(camera, "main", str(cat.save_path / row.path), row.start, row.end, size, "r1")


def _wakes(r: object, seg: FinishedSegment) -> bool:
    r._wake.clear()  # type: ignore[attr-defined]
    r.on_segment(seg)  # type: ignore[attr-defined]
    return bool(r._wake.is_set())  # type: ignore[attr-defined]


def test_a_segment_wakes_the_check_only_when_a_cap_could_be_exceeded(cat: Catalog, clock: FakeClock) -> None:
    r = retention(cat, clock, total_bytes=1000, per_camera_bytes={"gate": 600})
    assert _wakes(r, _finished(cat, "gate", T0, 100))  # no check yet: nothing proven
    r.enforce()  # gate 100: total room 900, gate's room 500
    assert not _wakes(r, _finished(cat, "gate", T0 + 10, 200))  # gate 300
    assert not _wakes(r, _finished(cat, "yard", T0, 300))  # total 600 (yard has no cap of its own)
    assert not _wakes(r, _finished(cat, "gate", T0 + 20, 300))  # gate 600: at its cap, not over it
    assert _wakes(r, _finished(cat, "gate", T0 + 30, 1))  # gate 601 > 600
    r.enforce()
    assert cat.totals()["gate"][1] <= 600
    yard = sum(_wakes(r, _finished(cat, "yard", T0 + 10 * i, 100)) for i in range(1, 6))
    assert yard >= 1 and cat.total_bytes() > 1000  # the total cap's crossing woke it
    r.enforce()
    assert cat.total_bytes() <= 1000


def test_caps_hold_at_every_segment_as_when_each_segment_was_checked(cat: Catalog, clock: FakeClock) -> None:
    """test_retention's "never exceeds by more than one segment per camera", the check run only when woken."""
    r = retention(cat, clock, total_bytes=1000, per_camera_bytes={"b": 400})
    r.enforce()
    woken = 0
    for i in range(60):
        for camera in ("a", "b", "c"):
            if _wakes(r, _finished(cat, camera, T0 + 10 * i, 40 + i)):
                woken += 1
                r.enforce()
            assert cat.total_bytes() <= 1000 and cat.totals().get("b", (0, 0))[1] <= 400
    assert 0 < woken < 180  # some segments were skipped, every crossing was checked
    assert r.gate.skipped == 180 - woken


def test_the_floor_wakes_the_check_as_soon_as_free_space_is_under_it(cat: Catalog, clock: FakeClock) -> None:
    free = [10_000]
    r = retention(cat, clock, min_free_bytes=5_000, free_space=lambda _p: free[0])
    r.enforce()
    assert not _wakes(r, _finished(cat, "gate", T0, 100))
    free[0] = 4_999  # whoever filled the disk
    assert _wakes(r, _finished(cat, "gate", T0 + 10, 100))
    free[0] = 6_000
    r.enforce()
    assert not _wakes(r, _finished(cat, "gate", T0 + 20, 100))


def test_a_shortage_or_a_failed_check_wakes_it_on_every_segment(cat: Catalog, clock: FakeClock) -> None:
    r = retention(cat, clock, min_free_bytes=100, free_space=lambda _p: 0)  # a floor nothing can meet
    r.enforce()
    assert r.status()["floorUnreachable"]
    assert _wakes(r, _finished(cat, "gate", T0, 10)) and _wakes(r, _finished(cat, "gate", T0 + 10, 10))
    r2 = retention(cat, clock, total_bytes=10**9)
    r2.enforce()
    r2.gate.begin()  # a check that began and raised (never ended)
    assert _wakes(r2, _finished(cat, "gate", T0 + 20, 10))


def test_an_age_deletion_wakes_the_check_when_it_falls_due(cat: Catalog, clock: FakeClock) -> None:
    day = 86400.0
    now = clock.time()
    r = retention(cat, clock, max_age_s=day)
    put_segment(cat, "gate", now - day + 100, size=10)  # deleted in 110 s (when it ends); woken from 100 s on
    r.enforce()
    assert cat.total_bytes() == 10
    assert not _wakes(r, _finished(cat, "gate", now, 10))
    clock.advance(100)
    assert _wakes(r, _finished(cat, "gate", now + 10, 10))  # its start is due: a check, which deletes nothing yet
    r.enforce()
    assert cat.total_bytes() == 30 and _wakes(r, _finished(cat, "gate", now + 30, 10))  # woken until it is gone
    clock.advance(10)
    r.enforce()
    assert cat.total_bytes() == 30  # deleted: the oldest left started just now
    assert not _wakes(r, _finished(cat, "gate", now + 20, 10))  # the next candidate is a day away
    # a finished segment older than every candidate (startup recovery) makes its own age the next due time
    assert _wakes(r, _finished(cat, "gate", clock.time() - 2 * day, 10))


def test_the_retention_thread_is_woken_only_by_segments_that_need_it(cat: Catalog, clock: FakeClock) -> None:
    r = retention(cat, clock, total_bytes=10**6, min_free_bytes=1, free_space=lambda _p: 10**9)
    r.start()
    try:
        wait_for(lambda: r.gate._proven, 10, "the first check")
        for i in range(20):
            r.on_segment(_finished(cat, "gate", T0 + 10 * i, 1000))
        assert r.gate.skipped == 20 and not r._wake.is_set()
        r.on_segment(_finished(cat, "gate", T0 + 1000, 10**6))  # over the cap
        wait_for(lambda: cat.total_bytes() <= 10**6, 10, "the cap enforced on the thread")
    finally:
        r.stop()
