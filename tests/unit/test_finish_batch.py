"""Segments that close together are finished as one batch (issue 10, tenth pass): their data is flushed together,
then they are renamed, the renames are made durable together, then each is published, in order. The order per
segment is the one docs/segment-lifecycle.md step 3 asks for; only the number of flushes changes. Real fMP4 files
from ffmpeg, the real finisher, syncfs and fsync; what the kernel still holds unwritten is read from the kernel
(cachestat(2)) where it can be."""

from __future__ import annotations

import errno
import itertools
import os
import queue
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.core.clock import SystemClock
from cctv_daemon.core.events import EventBus, FinishedSegment
from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
from cctv_daemon.segments import durable, handoff
from cctv_daemon.segments.finisher import SegmentFinisher
from cctv_daemon.segments.watcher import StagedSegment
from tests.support import pagecache
from tests.unit.test_robust_segments import staged_run

needs_syncfs = pytest.mark.skipif(durable._libc_syncfs is None, reason="syncfs(2) needs Linux >= 5.8")
CAMERAS = ("gate", "yard", "door")


@pytest.fixture(autouse=True)
def fresh_policy(monkeypatch: pytest.MonkeyPatch) -> durable._Policy:
    pol = durable._Policy()
    monkeypatch.setattr(durable, "policy", pol)
    return pol


def _three_cameras(save: Path, n: int = 2) -> list[StagedSegment]:
    """n staged segments for each camera, in the order they closed (camera by camera, as they interleave)."""
    runs = [staged_run(save / ".cctv", camera, n)[1] for camera in CAMERAS]
    return [run[i] for i in range(n) for run in runs]


def _trace(monkeypatch: pytest.MonkeyPatch, steps: list[tuple[str, str]]) -> None:
    """Each syncfs, fsync and rename, with the path it was made on, in order."""
    real_fsync, real_syncfs, real_replace = os.fsync, durable._syncfs, os.replace

    def on_fd(kind: str, real: Callable[[int], None]) -> Callable[[int], None]:
        def call(fd: int) -> None:
            real(fd)
            steps.append((kind, _path_of(fd)))
        return call

    def replace(src: Any, dest: Any) -> None:
        real_replace(src, dest)
        steps.append(("rename", os.fspath(dest)))

    monkeypatch.setattr(os, "fsync", on_fd("fsync", real_fsync))
    monkeypatch.setattr(durable, "_syncfs", on_fd("syncfs", real_syncfs))
    monkeypatch.setattr(os, "replace", replace)


def _path_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _fails_where(real: Callable[[int], None], failing: Callable[[int], bool]) -> Callable[[int], None]:
    """Fault injection: `real` (syncfs or fsync), except that it reports EIO, as a failing disk would, where
    `failing(fd)`."""

    def call(fd: int) -> None:
        if failing(fd):
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    return call


def _finisher(save: Path, steps: list[tuple[str, str]]) -> tuple[SegmentFinisher, list[FinishedSegment]]:
    published: list[FinishedSegment] = []

    def catalog(seg: FinishedSegment) -> None:  # first on the bus, as the catalog is
        counts = pagecache.page_counts(seg.file)
        assert counts is None or (counts.dirty == 0 and counts.writeback == 0), counts
        steps.append(("publish", seg.file))
        published.append(seg)

    bus = EventBus()
    bus.subscribe("catalog", catalog)
    return SegmentFinisher(save, save / ".cctv", find_ffmpeg(), bus, SystemClock()), published


@needs_syncfs
def test_a_batch_is_one_syncfs_for_the_data_the_renames_then_one_syncfs_for_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save = tmp_path / "rec"
    batch = _three_cameras(save)
    steps: list[tuple[str, str]] = []
    fin, published = _finisher(save, steps)
    _trace(monkeypatch, steps)
    done = fin.finish_batch(batch)
    assert [s.camera for s in done] == [s.camera for s in batch] and published == done
    kinds = [k for k, _ in steps]
    assert kinds == ["syncfs"] + ["rename"] * 6 + ["syncfs"] + ["publish"] * 6, steps
    assert all(Path(s.file).exists() for s in done)
    assert not any(Path(s.file).exists() for s in batch), "a staging name survived its rename"
    assert [p for k, p in steps if k == "rename"] == [s.file for s in done]


@pytest.mark.parametrize("why", ["no syncfs", "live view on this disk"])
def test_without_syncfs_each_file_then_each_folder_is_fsynced_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_policy: durable._Policy, why: str) -> None:
    if why == "no syncfs":
        fresh_policy.available = False  # as on Windows, macOS or Linux < 5.8
    else:
        durable.fsync_only_on(tmp_path)  # `api.liveDir` on the recording disk (recording/live.py)
    save = tmp_path / "rec"
    batch = _three_cameras(save)
    steps: list[tuple[str, str]] = []
    fin, published = _finisher(save, steps)
    _trace(monkeypatch, steps)
    done = fin.finish_batch(batch)
    assert len(done) == 6 and published == done
    kinds = [k for k, _ in steps]
    assert kinds == ["fsync"] * 6 + ["rename"] * 6 + ["fsync"] * 6 + ["publish"] * 6, steps
    assert [p for _, p in steps[:6]] == [os.fspath(s.file) for s in batch]
    folders = {p for _, p in steps[12:18]}
    expected = {os.path.dirname(s.file) for s in done} | {os.fspath(Path(s.file).parent) for s in batch}
    assert folders == expected and len(expected) == 6, "every folder of a rename, each once"


@needs_syncfs
def test_a_write_back_error_keeps_only_the_failed_segment_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection (a failing disk cannot be made here): syncfs reports EIO, as Linux >= 5.8 does when any
    page of the file system failed; each file is then fsynced to find its own, and only the one whose fsync fails
    stays in staging, unpublished, to be finished again when its run closes."""
    save = tmp_path / "rec"
    batch = _three_cameras(save, n=1)
    bad = os.stat(batch[1].file).st_ino
    steps: list[tuple[str, str]] = []
    fin, published = _finisher(save, steps)

    monkeypatch.setattr(durable, "_syncfs", _fails_where(durable._syncfs, lambda _fd: True))
    monkeypatch.setattr(os, "fsync", _fails_where(os.fsync, lambda fd: os.fstat(fd).st_ino == bad))
    done = fin.finish_batch(batch)
    assert [s.camera for s in done] == ["gate", "door"] and published == done
    assert Path(batch[1].file).exists(), "the segment whose data failed to reach the disk left staging"
    assert not Path(batch[0].file).exists() and not Path(batch[2].file).exists()


@needs_syncfs
def test_a_rename_that_cannot_be_made_durable_is_not_catalogued(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the syncfs after the renames reports EIO and the fsync of one camera's destination folder
    fails; that camera's segment is in place but unpublished (no row may name a file whose name a power cut could
    undo), the others are published."""
    save = tmp_path / "rec"
    batch = _three_cameras(save, n=1)
    steps: list[tuple[str, str]] = []
    fin, published = _finisher(save, steps)
    syncfs_calls = itertools.count()
    yard = os.fspath(save / "yard")
    # the second syncfs is the one after the renames
    monkeypatch.setattr(durable, "_syncfs", _fails_where(durable._syncfs, lambda _fd: next(syncfs_calls) == 1))
    monkeypatch.setattr(os, "fsync", _fails_where(os.fsync, lambda fd: _path_of(fd).startswith(yard)))
    done = fin.finish_batch(batch)
    assert [s.camera for s in done] == ["gate", "door"] and published == done
    assert not Path(batch[1].file).exists(), "yard's segment was not renamed"
    assert len(list((save / "yard").rglob("*.mp4"))) == 1, "yard's segment is not in place"


def test_a_name_taken_earlier_in_the_same_batch_gets_the_next_suffix(tmp_path: Path) -> None:
    dest = os.fspath(tmp_path / "cam_feed_a_b.mp4")
    assert SegmentFinisher._free_dest(dest) == dest
    assert SegmentFinisher._free_dest(dest, {dest}) == os.fspath(tmp_path / "cam_feed_a_b~1.mp4")


class _Recording(SegmentFinisher):
    """The real finisher, noting what the hand-off asked of it."""

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.calls: queue.SimpleQueue[tuple[str, list[str]]] = queue.SimpleQueue()

    def finish_batch(self, batch: list[StagedSegment]) -> list[FinishedSegment]:
        done = super().finish_batch(batch)
        self.calls.put(("batch", [s.camera for s in batch]))
        return done

    def close_run(self, cam_dir: Path, run_id: str) -> list[FinishedSegment]:
        done = super().close_run(cam_dir, run_id)
        self.calls.put(("close", [cam_dir.name]))
        return done

    def next_call(self) -> tuple[str, list[str]]:
        return self.calls.get(timeout=20)


def test_the_hand_off_gathers_segments_closing_together_and_keeps_a_run_end_after_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Wider windows than the daemon's (0.25 s, 1 s): this test's segments are handed on microseconds apart, but a
    # loaded test machine may pause its thread between two of them.
    monkeypatch.setattr(handoff, "GATHER_IDLE_S", 2.0)
    monkeypatch.setattr(handoff, "GATHER_MAX_S", 10.0)
    save = tmp_path / "rec"
    gate1, yard1, door1, gate2, yard2, door2 = _three_cameras(save, n=2)
    bus = EventBus()
    published: list[FinishedSegment] = []
    bus.subscribe("catalog", published.append)
    fin = _Recording(save, save / ".cctv", find_ffmpeg(), bus, SystemClock())
    ho = handoff.SegmentHandoff(fin.root, fin)
    ho.start()
    stopped = False
    try:
        closed = ho.watcher.on_segment  # what the watcher calls for each segment ffmpeg lists as closed
        for seg in (gate1, yard1, door1, yard2):  # closing within milliseconds of each other
            closed(seg)
        ho.run_ended("yard", Path(yard1.file).parent, yard1.run_id)  # yard's ffmpeg exits right after
        assert fin.next_call() == ("batch", ["gate", "yard", "door", "yard"])
        assert fin.next_call() == ("close", ["yard"]), "the run's end was not handled after its segments"
        closed(gate2)  # a lone segment later: a batch of its own
        assert fin.next_call() == ("batch", ["gate"])
        closed(door2)
        ho.stop(30)  # the stop finishes what is gathered first
        stopped = True
        assert fin.next_call() == ("batch", ["door"])
    finally:
        if not stopped:
            ho.stop(5)
    assert [s.camera for s in published] == ["gate", "yard", "door", "yard", "gate", "door"]
    assert not any((fin.root / "yard").glob("*.mp4")), "yard's run left a segment in staging"
