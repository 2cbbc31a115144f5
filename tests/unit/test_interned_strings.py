"""Issue 12, finding 16: the daemon's RSS stepped up by 0.94 and 1.88 MiB now and then for the life of a run. Those
are CPython's table of interned strings being reallocated: pathlib interns every path part it parses, so a Path
built from every new segment name (staging name, final name, the name of a deleted segment) added entries to the
table; the strings die with their paths, but their slots are only reclaimed when the full table is reallocated,
at a size computed from the strings alive at that moment. The hand-off and the deletion path now carry plain str
paths: they use no slot of the table per segment, so the table never fills up and is never reallocated.

The number of free slots is measured from outside: intern throwaway strings until the table is reallocated (a new
block of its size appears in tracemalloc's peak) and count them. Real files, real fMP4 from ffmpeg, real SQLite,
the real watcher (watchdog) -> finisher -> bus -> catalog path, then retention's deletion path."""

from __future__ import annotations

import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core.clock import SystemClock
from cctv_daemon.core.events import EventBus
from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
from cctv_daemon.segments import handoff as handoff_mod
from cctv_daemon.segments import staging
from cctv_daemon.segments.finisher import SegmentFinisher
from cctv_daemon.segments.handoff import SegmentHandoff
from tests.unit.test_mp4_tail import make_fmp4

RUN = "r20261121T100000Z-abcdef"
SEGMENTS = 200
_TABLE_MIN_BYTES = 300_000  # the smallest table a process with our imports has is ~0.4 MB (2^15 slots)


def _slots_until_resize(tag: str) -> int | None:
    """Intern unique throwaway strings until the interned-string table is reallocated; how many it took."""
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    for n in range(1, 2_000_000):
        sys.intern(f"zz-interned-probe-{tag}-{n}")
        if tracemalloc.get_traced_memory()[1] - base > _TABLE_MIN_BYTES:
            return n
    return None


def test_hand_off_and_deletion_use_no_interned_string_slot_per_segment(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # One segment at a time, each awaited before the next is written: no batch to gather (segments/handoff.py).
    monkeypatch.setattr(handoff_mod, "GATHER_IDLE_S", 0.0)
    save = tmp_path / "rec"
    seed = tmp_path / "seed.mp4"
    make_fmp4(seed)
    data = seed.read_bytes()
    bus = EventBus()
    fin = SegmentFinisher(save, save / ".cctv", find_ffmpeg(), bus, SystemClock())
    catalog = Catalog.for_state_dir(save / ".cctv", save)
    bus.subscribe("catalog", catalog.add_segment)
    catalogued: list[None] = []
    bus.subscribe("count", lambda _seg: catalogued.append(None))
    deleter = SegmentDeleter(catalog)
    handoff = SegmentHandoff(fin.root, fin)
    cam = fin.root / "cam"
    staging.lists_dir(cam).mkdir(parents=True)
    cam.mkdir(parents=True, exist_ok=True)
    staging.write_meta(cam, RUN, staging.RunMeta("cam", "main", time.time() - 86400))
    cam_dir, lst = os.fspath(cam), os.fspath(staging.list_path(cam, RUN))

    def segment(i: int) -> None:  # as ffmpeg does it; str paths only, so that the test itself interns nothing
        f = os.path.join(cam_dir, f"{RUN}_{i:06d}.mp4")
        with open(f, "wb") as out:
            out.write(data)
        first = max(0, i - staging.LIST_SIZE + 1)
        with open(lst + ".tmp", "wb") as out:
            out.write(b"".join(f"{RUN}_{j:06d}.mp4,{3 * j}.0,{3 * j + 3}.0\n".encode() for j in range(first, i + 1)))
        os.replace(lst + ".tmp", lst)
        deadline = time.monotonic() + 30
        while os.path.exists(f):  # handed off
            assert time.monotonic() < deadline, f"segment {i} not handed off"
            time.sleep(0.002)

    def delete_all() -> int:
        rows = [r.path for r in catalog.segments()]
        return sum(deleter.delete_segment(rel, "test") for rel in rows)

    def idle(count: int) -> None:  # every segment catalogued, nothing in flight
        deadline = time.monotonic() + 30
        while len(catalogued) < count:
            assert time.monotonic() < deadline, f"{len(catalogued)} of {count} segments catalogued"
            time.sleep(0.01)

    handoff.start()
    tracemalloc.start(1)
    try:
        for i in range(20):  # warm-up: first-time imports, caches, the date folder
            segment(i)
        idle(20)
        assert delete_all() == 20
        if _slots_until_resize("a") is None:  # now a freshly reallocated table
            pytest.skip("no reallocation of the interned-string table seen (not CPython's dict-based table?)")
        free_idle = _slots_until_resize("b")  # the free slots of a fresh table, nothing else interning
        for i in range(20, 20 + SEGMENTS):
            segment(i)
        idle(20 + SEGMENTS)
        assert delete_all() == SEGMENTS
        free_after = _slots_until_resize("c")
    finally:
        tracemalloc.stop()
        handoff.stop()
    assert free_idle is not None and free_after is not None
    used = free_idle - free_after
    # Before the fix: 3 or more slots per segment (its staging name, its final name, its name when deleted).
    assert used < SEGMENTS // 10, f"{used} interned-string slots used by {SEGMENTS} segments"


@pytest.mark.parametrize("rel", ["gate/2026-11-29/gate_main_20261129T100000Z_20261129T100010Z.mp4",
                                 "a_b/2026-01-01/x~2.mp4", "./gate//2026-11-29/x.mp4", "gate/./x.mp4"])
def test_str_path_helpers_give_what_pathlib_gives(tmp_path: Path, rel: str) -> None:
    """The str helpers of the hand-off and the deleter name the same files and rows as the Path forms they replace."""
    from pathlib import PurePosixPath

    from cctv_daemon.segments import names

    save = tmp_path / "rec"
    want_abs = save.joinpath(*PurePosixPath(rel).parts)
    assert names.abs_file(save, rel) == os.fspath(want_abs)
    want_rel = PurePosixPath(*want_abs.relative_to(save).parts).as_posix()
    assert names.rel_file(save, names.abs_file(save, rel)) == want_rel
    assert names.rel_file(save, os.path.join(os.fspath(save), *rel.split("/"))) == want_rel
    assert names.final_file(os.fspath(save), "gate", "main", 1.8e9, 1.8e9 + 10) == os.fspath(
        names.final_path(save, "gate", "main", 1.8e9, 1.8e9 + 10))
    with pytest.raises(ValueError):
        names.rel_file(save, os.fspath(tmp_path / "elsewhere" / "x.mp4"))
