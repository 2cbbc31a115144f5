"""segments/durable.py: a finished segment's data is on disk before it is named and catalogued, written back by
syncfs(2) (the kernel's flusher threads) where the system has it, by fsync(2) otherwise. Whether the pages really
were written is read from the kernel (cachestat(2), tests/support/pagecache.py), not inferred from the calls made."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cctv_daemon.segments import durable
from tests.support import pagecache

needs_cachestat = pytest.mark.skipif(not pagecache.available(), reason="cachestat(2) needs Linux >= 6.5")
needs_syncfs = pytest.mark.skipif(durable._libc_syncfs is None, reason="syncfs(2) needs Linux >= 5.8")


@pytest.fixture(autouse=True)
def fresh_policy(monkeypatch: pytest.MonkeyPatch) -> durable._Policy:
    pol = durable._Policy()
    monkeypatch.setattr(durable, "policy", pol)
    return pol


def _dirty_file(path: Path, size: int = 4_000_000) -> Path:
    """A file whose pages are dirty when this returns. Written again if another process wrote them back first: the
    parallel test workers' daemons call syncfs on the same file system (a 64 kB file was once found clean)."""
    counts = None
    for _ in range(10):
        with path.open("wb") as f:
            for _ in range(size // 65536):
                f.write(os.urandom(65536))  # 64 kB writes, as ffmpeg's fragments arrive
        counts = pagecache.page_counts(path)
        if counts is None or counts.dirty > 0:
            return path
    raise AssertionError(f"precondition: the new file's pages are dirty ({counts})")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flush(path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """durable.flush_all on one file, as the finisher calls it; how it was flushed ("syncfs", "fsync" or both, in
    order). OSError if it could not be made durable."""
    used: list[str] = []
    real_syncfs = durable._syncfs

    def syncfs(fd: int) -> None:
        used.append("syncfs")
        real_syncfs(fd)

    def fsync(one: str) -> None:
        used.append("fsync")
        _fsync(one)

    with monkeypatch.context() as m:
        m.setattr(durable, "_syncfs", syncfs)
        failed = durable.flush_all([os.fspath(path)], fsync)
    if failed:
        raise failed[os.fspath(path)]
    return "+".join(used)


@needs_cachestat
@needs_syncfs
def test_syncfs_writes_the_segment_back_before_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seg = _dirty_file(tmp_path / "seg.mp4")
    assert flush(seg, monkeypatch) == "syncfs"
    counts = pagecache.page_counts(seg)
    assert counts is not None and counts.dirty == 0 and counts.writeback == 0, counts


@needs_cachestat
def test_without_syncfs_it_is_fsync_and_the_data_is_written_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 fresh_policy: durable._Policy) -> None:
    fresh_policy.available = False  # as on Windows, macOS or Linux < 5.8
    seg = _dirty_file(tmp_path / "seg.mp4")
    assert flush(seg, monkeypatch) == "fsync"
    counts = pagecache.page_counts(seg)
    assert counts is not None and counts.dirty == 0 and counts.writeback == 0, counts


@needs_syncfs
def test_a_system_refusing_syncfs_falls_back_to_fsync_for_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               fresh_policy: durable._Policy) -> None:
    """Fault injection: syncfs refused (ENOSYS, as a seccomp policy or an old libc would) cannot be caused here."""
    calls: list[int] = []

    def refused(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.ENOSYS, "syncfs: Function not implemented")

    monkeypatch.setattr(durable, "_syncfs", refused)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_ino), real_fsync(fd))[1])
    seg = _dirty_file(tmp_path / "seg.mp4")
    assert flush(seg, monkeypatch) == "syncfs+fsync"
    assert synced == [seg.stat().st_ino], "the data was not fsynced after syncfs was refused"
    assert flush(seg, monkeypatch) == "fsync"
    assert len(calls) == 1, "syncfs was tried again after the system refused it"
    assert not fresh_policy.available


@needs_syncfs
def test_a_write_back_error_reaches_the_finisher_through_the_files_own_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection (a failing disk cannot be made here): a syncfs reporting EIO (Linux >= 5.8 does when any page
    of the file system failed) is followed by an fsync of each file, which reports the file's own failure (Linux
    reports a failed page to the next fsync of its file): the error reaches the finisher, and the segment stays in
    staging instead of being catalogued. An error in another file of the file system holds no segment back."""

    def failed(fd: int) -> None:
        raise OSError(errno.EIO, "syncfs: Input/output error")

    monkeypatch.setattr(durable, "_syncfs", failed)
    seg = _dirty_file(tmp_path / "seg.mp4", 65536)
    assert flush(seg, monkeypatch) == "syncfs+fsync", "a syncfs error was taken as this file's"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.fstat(fd).st_ino == seg.stat().st_ino:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as caught:
        flush(seg, monkeypatch)
    assert caught.value.errno == errno.EIO


@needs_syncfs
def test_a_slow_syncfs_switches_to_fsync_for_a_while(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      fresh_policy: durable._Policy) -> None:
    """A syncfs slower than SLOW_SYNCFS_S waited for another program's data: fsync for FSYNC_AFTER_SLOW_S."""
    seg = _dirty_file(tmp_path / "seg.mp4", 65536)
    monkeypatch.setattr(durable, "SLOW_SYNCFS_S", 0.0)  # every syncfs counts as slow
    assert flush(seg, monkeypatch) == "syncfs"
    assert fresh_policy.fsync_until > 0
    assert flush(seg, monkeypatch) == "fsync"
    fresh_policy.fsync_until = 0.0  # the while is over
    assert flush(seg, monkeypatch) == "syncfs"


@pytest.mark.parametrize(("release", "reports"), [("5.7.19", False), ("5.8.0", True), ("6.18.44-fc-v857", True),
                                                   ("4.19.0-27-amd64", False), ("weird", False), ("10.0", True)])
def test_syncfs_is_used_only_where_it_reports_write_back_errors(release: str, reports: bool) -> None:
    assert durable._kernel_reports_syncfs_errors(release) is reports


@needs_syncfs
def test_a_file_system_holding_live_fragments_is_fsynced_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  fresh_policy: durable._Policy) -> None:
    """The live view's folder on the recording disk (`api.liveDir`): a syncfs per segment would write every HLS
    fragment the kernel would otherwise drop unwritten, so segments there are fsynced (recording/live.py)."""
    from cctv_daemon.recording import live

    seg = _dirty_file(tmp_path / "seg.mp4", 65536)
    assert flush(seg, monkeypatch) == "syncfs"
    live.prepare(tmp_path / "live" / "cams" / "cam1")  # the live folder on the same file system
    assert flush(seg, monkeypatch) == "fsync"
    other = Path("/dev/shm")
    if other.is_dir() and other.stat().st_dev != tmp_path.stat().st_dev:
        fresh_policy.fsync_devices.clear()
        durable.fsync_only_on(other)  # the default: live fragments on tmpfs change nothing for the segments
        assert flush(seg, monkeypatch) == "syncfs"
