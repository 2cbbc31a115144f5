"""The segment-list watcher (real inotify through watchdog)."""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
from pathlib import Path

import pytest

from cctv_daemon.segments import watcher as watcher_mod
from cctv_daemon.segments.lists_observer import ListsObserver
from cctv_daemon.segments.watcher import SegmentWatcher, StagedSegment, _Handler, _ListReader


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


@pytest.mark.skipif(sys.platform != "linux", reason="ListsObserver is inotify's (elsewhere the plain observer)")
def test_renames_are_read_in_watchdogs_inotify_thread_and_nothing_else_reaches_the_handler(tmp_path: Path) -> None:
    """The fast path (segments/lists_observer.py): a list renamed into place is read in watchdog's inotify thread
    (no hop through its emitter and observer threads), once per rename; the temporary list's creation and writes
    reach nothing (the camera folder's watch does not even ask inotify for them); a camera folder made after start
    is still watched (watchdog's own handling) and a list renamed into it read."""
    seen: list[tuple[StagedSegment, str]] = []
    got = threading.Event()
    dispatched: list[object] = []

    def on_segment(seg: StagedSegment) -> None:
        seen.append((seg, type(threading.current_thread()).__name__))
        got.set()

    watcher = SegmentWatcher(tmp_path, on_segment)
    assert watcher.fast_path and ListsObserver is not None
    watcher.start()
    assert isinstance(watcher._observer, ListsObserver)
    real = _Handler.dispatch
    _Handler.dispatch = lambda self, event: (dispatched.append(event), real(self, event))[1]  # type: ignore[method-assign]
    try:
        run = "r20261129T155600Z-abcdef"
        lines = ""
        for cam in ("cam", "cam2"):
            folder = watcher.lists / cam
            folder.mkdir(parents=True)
            deadline = time.monotonic() + 10
            while not any(getattr(e, "src_path", "").endswith(cam) for e in dispatched):  # watched: created seen
                assert time.monotonic() < deadline, dispatched
                time.sleep(0.01)
            for k in range(3):
                got.clear()
                lines += f"{run}_{k:06d}.mp4,{2 * k}.000000,{2 * k + 2}.000000\n"
                tmp = folder / f"{run}.csv.tmp"
                tmp.write_text(lines)
                tmp.rename(folder / f"{run}.csv")
                assert got.wait(10)
            lines = ""
        time.sleep(0.3)  # anything late would show below
    finally:
        _Handler.dispatch = real  # type: ignore[method-assign]
        watcher.stop()
    assert [(s.camera, Path(s.file).name) for s, _ in seen] == [
        (cam, f"{run}_{k:06d}.mp4") for cam in ("cam", "cam2") for k in range(3)]
    assert {thread for _, thread in seen} == {"InotifyFD"}
    assert all(e.is_directory for e in dispatched), dispatched  # only the folders' creation took watchdog's way


def test_a_list_is_parsed_from_its_tail_as_it_would_be_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """parse() decodes the list's last TAIL_LINES lines when an entry handed on already is among them: the same
    segments as a whole-list parse, whatever the list holds (garbage, other line separators, a torn last line)."""
    run = "r20261129T155600Z-abcdef"
    rng = random.Random(7)
    pieces = [f"{run}_{{k:06d}}.mp4,{{s}}.0,{{e}}.0\n", "garbage\n", "\n", f"{run}_{{k:06d}}.mp4,x,y\n",
              "\x0c", "\r\n", "\u2028", "r2_{k:06d}.mp4,0,1\n", "\xff"]
    for trial in range(300):
        data = "".join(rng.choice(pieces).format(k=k, s=k, e=k + 1) for k in range(rng.randint(0, 40)))
        raw = data.encode("utf-8", "replace")
        last = rng.randint(-1, 40)
        tail_reader = _ListReader(Path(f"/x/.lists/cam/{run}.csv"), Path("/x/cam"))
        whole_reader = _ListReader(Path(f"/x/.lists/cam/{run}.csv"), Path("/x/cam"))
        tail_reader.last_index = whole_reader.last_index = last
        got = tail_reader.parse(raw)
        with monkeypatch.context() as m:
            m.setattr(watcher_mod, "TAIL_LINES", 10**9)
            want = whole_reader.parse(raw)
        assert got == want and tail_reader.last_index == whole_reader.last_index, (trial, data)


def test_a_list_longer_than_its_tail_read_is_read_whole_when_the_tail_does_not_say_where_new_entries_start(
        tmp_path: Path) -> None:
    """read_new reads the list's last TAIL_BYTES first; when more than TAIL_LINES entries are new (or the tail's
    lines are long), it reads the whole list: the same segments as parse() of the whole file, each handed on once."""
    run = "r20261129T155600Z-abcdef"
    lst = tmp_path / ".lists" / "cam" / f"{run}.csv"
    lst.parent.mkdir(parents=True)
    data = "".join(f"{run}_{k:06d}.mp4,{k}.000000,{k + 1}.000000\n" for k in range(64)).encode()
    assert len(data) > watcher_mod.TAIL_BYTES
    lst.write_bytes(data)
    for last in (-1, 10, 50, 58, 60, 62, 63):
        reader = _ListReader(lst, tmp_path / "cam")
        whole = _ListReader(lst, tmp_path / "cam")
        reader.last_index = whole.last_index = last
        got = reader.read_new()
        assert got == whole.parse(data) and [int(s.start_s) for s in got] == list(range(last + 1, 64)), last
        assert reader.read_new() == []
