"""The segment-list watcher (real inotify through watchdog)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from cctv_daemon.segments.watcher import SegmentWatcher, StagedSegment


def test_stop_while_events_flow_logs_no_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """watchdog's Observer.stop() races with an emitter thread reading an event and logs
    "InotifyEmitter.queue_events() called when the thread is inactive" at error level (before the fix: about one
    stop in two while lists were being written). A clean stop must log nothing at error level."""
    caplog.set_level(logging.DEBUG)
    for i in range(20):
        root = tmp_path / f"s{i}"
        seen: list[StagedSegment] = []
        watcher = SegmentWatcher(root, seen.append)
        watcher.start()
        lists = watcher.lists / "cam"
        lists.mkdir(parents=True)
        done = threading.Event()

        def write(folder: Path = lists, stop: threading.Event = done) -> None:
            k = 0
            while not stop.is_set():
                p = folder / f"r{k % 5}.csv"
                p.write_text(f"r{k % 5}_{k:06d}.mp4,0,1\n")
                if k % 3 == 0:
                    p.unlink()
                k += 1

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.05)
        watcher.stop()
        done.set()
        writer.join()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def test_watcher_still_reports_segments_and_stops(tmp_path: Path) -> None:
    seen: list[StagedSegment] = []
    watcher = SegmentWatcher(tmp_path, seen.append)
    watcher.start()
    folder = watcher.lists / "cam"
    folder.mkdir(parents=True)
    run = "r20261129T155600Z-abcdef"  # a run id as the camera makes them (the watcher ignores other names)
    # as ffmpeg writes it: {run}.csv.tmp, renamed over the list (the watcher asks inotify for renames only)
    (folder / f"{run}.csv.tmp").write_text(f"{run}_000000.mp4,0.000000,2.000000\n")
    (folder / f"{run}.csv.tmp").rename(folder / f"{run}.csv")
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    watcher.stop()
    assert [(s.camera, s.run_id, s.path.name, s.end_s) for s in seen] == [("cam", run, f"{run}_000000.mp4", 2.0)]
    assert not (watcher.lists / ".stop").exists()
    assert not [t for t in threading.enumerate() if "Inotify" in type(t).__name__ or "Observer" in type(t).__name__]


def test_a_list_seen_late_is_dated_when_ffmpeg_renamed_it(tmp_path: Path) -> None:
    """A segment's end is when ffmpeg put its line in the list. watchdog can hold a rename for up to 0.5 s (its
    move-event grouper, under load), so the observation is dated back by how long ago the list was renamed (its
    mtime): before, such a segment's end and name came out 0.5 s late. A list older than a second is not an event
    delay: then the read time stands."""
    from cctv_daemon.core.clock import FakeClock

    clock = FakeClock()
    seen: list[StagedSegment] = []
    watcher = SegmentWatcher(tmp_path, seen.append, clock=clock)  # not started: poll() is what events call
    folder = watcher.lists / "cam"
    folder.mkdir(parents=True)
    run = "r20261129T155600Z-abcdef"
    lst = folder / f"{run}.csv"
    lst.write_text(f"{run}_000000.mp4,0.000000,2.000000\n")
    renamed = time.time() - 0.5
    os.utime(lst, (renamed, renamed))
    watcher.poll(lst)
    assert len(seen) == 1 and seen[0].seen is not None
    assert clock.time() - seen[0].seen.wall == pytest.approx(0.5, abs=0.1)
    assert clock.monotonic() - seen[0].seen.mono == pytest.approx(0.5, abs=0.1)
    lst.write_text(f"{run}_000000.mp4,0.000000,2.000000\n{run}_000001.mp4,2.000000,4.000000\n")
    stale = time.time() - 30
    os.utime(lst, (stale, stale))
    watcher.poll(lst)
    assert len(seen) == 2 and seen[1].seen is not None and seen[1].seen.wall == clock.time()


def test_a_list_renamed_into_a_new_folder_before_it_is_watched_is_read(tmp_path: Path) -> None:
    """The watcher asks inotify for renames (and new folders) only. A camera's lists folder made after start gets
    its watch a moment later: a list renamed into it in that moment raised no rename event for us (the CI run of
    test_watcher_still_reports_segments_and_stops saw nothing in 10 s). The new folder's own event reads it."""
    seen: list[StagedSegment] = []
    watcher = SegmentWatcher(tmp_path, seen.append)
    watcher.start()
    try:
        runs = [f"r20261129T1556{i:02d}Z-abcdef" for i in range(30)]
        for i, run in enumerate(runs):
            folder = watcher.lists / f"cam{i}"
            folder.mkdir(parents=True)
            (folder / f"{run}.csv.tmp").write_text(f"{run}_000000.mp4,0.000000,2.000000\n")
            (folder / f"{run}.csv.tmp").rename(folder / f"{run}.csv")
        deadline = time.monotonic() + 10
        while len(seen) < len(runs) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watcher.stop()
    assert sorted(s.run_id for s in seen) == runs
