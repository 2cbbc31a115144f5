"""A finished segment's data made durable before it gets its final name and its row (docs/segment-lifecycle.md,
step 3: "durable before catalogued").

On Linux >= 5.8 the data is flushed with syncfs(2) on the segment's file system instead of fsync(2) on the file.
Both return once the file's pages are on disk, but with fsync the calling thread writes the pages back itself (on
the benchmark VM 0.63 ms of the finisher thread's CPU for a 3.5 MB segment, the largest single cost of the daemon,
issue 10), while syncfs hands the writeback to the kernel's flusher threads, the same threads that write back a
bare `ffmpeg -f segment`'s files, and waits for them (0.24 ms of the caller's CPU; `bench/fsync_delay.py`,
docs/benchmarks.md "Ninth pass"). The guarantee is wider, not weaker: every page that was dirty on that file system
when the call began is written and the journal committed when it returns, and since Linux 5.8 syncfs reports
write-back errors (EIO, ENOSPC) as fsync does (errors seen since the file was opened, hence the fresh descriptor).

What syncfs also writes is data the kernel would write within dirty_expire_centisecs (30 s) anyway: the other
cameras' growing segments, the catalog's log. Where another program keeps much dirty data on the same file system
(a large copy), syncfs would wait for it: a syncfs slower than SLOW_SYNCFS_S switches to fsync for FSYNC_AFTER_SLOW_S,
with one log line. A file system holding the live view's short-lived fragments is fsynced per file
(`fsync_only_on`). Without syncfs (Windows, macOS, Linux < 5.8, a libc or seccomp policy without it): fsync.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("cctv_daemon.segment")

SLOW_SYNCFS_S = 1.0  # a syncfs this slow waited for someone else's data: fsync for a while
FSYNC_AFTER_SLOW_S = 600.0
_NO_SYNCFS = (errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EINVAL, errno.EBADF, errno.ENOTSUP)


def _kernel_reports_syncfs_errors(release: str) -> bool:
    """Linux 5.8 made syncfs(2) return write-back errors; before, it returned 0 even if the pages failed."""
    try:
        major, minor = (int(part) for part in release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


def _load_syncfs() -> Any:
    if not sys.platform.startswith("linux") or not _kernel_reports_syncfs_errors(os.uname().release):
        return None
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)  # ctypes releases the GIL while it waits
    except OSError:
        return None


_libc_syncfs = _load_syncfs()


def _syncfs(fd: int) -> None:
    """syncfs(2) on the file system of `fd`; OSError on failure. Module-level so that tests can watch it."""
    if _libc_syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


class _Policy:
    """Whether syncfs is used now: off for good when the system lacks it, for a while after a slow one."""

    def __init__(self) -> None:
        self.available = _libc_syncfs is not None
        self.fsync_until = 0.0
        self.fsync_devices: set[int] = set()  # file systems where syncfs would write what need never be written
        self._lock = threading.Lock()

    def use_syncfs(self) -> bool:
        return self.available and time.monotonic() >= self.fsync_until

    def took(self, seconds: float) -> None:
        if seconds < SLOW_SYNCFS_S:
            return
        with self._lock:
            self.fsync_until = time.monotonic() + FSYNC_AFTER_SLOW_S
        log.info("syncfs_slow_using_fsync", seconds=round(seconds, 3), for_s=FSYNC_AFTER_SLOW_S,
                 detail="another program has much unwritten data on this file system; fsync the segments instead")

    def unavailable(self, exc: OSError) -> None:
        self.available = False
        log.info("syncfs_unavailable_using_fsync", error=str(exc))


policy = _Policy()


def fsync_only_on(path: Path | str) -> None:
    """The file system of `path` holds short-lived files the kernel need never write back (the live view's HLS
    fragments when `api.liveDir` is on the recording disk; tmpfs by default): a syncfs there would write them at
    every segment, so segments on it are fsynced instead."""
    policy.fsync_devices.add(os.stat(path).st_dev)


def flush_all(paths: Sequence[str], fsync: Callable[[str], None]) -> dict[str, OSError]:
    """Make every path durable (a file's data and size, a folder's entries: `fsync` is how one path is flushed on
    its own) and return those that could not be, with their errors. Segments that closed together are flushed
    together: where syncfs is in use, one syncfs per file system covers every path on it (the finisher's batch,
    segments/handoff.py). Elsewhere each path is fsynced, and so is each after a syncfs that reported a write-back
    error, to tell which failed: Linux reports a failed page to the next fsync of its file (a fresh descriptor
    sees an error no one has seen yet), and an error in another program's file keeps no segment back."""
    failed: dict[str, OSError] = {}
    by_device: dict[int, list[str]] = {}
    for path in paths:
        try:
            by_device.setdefault(os.stat(path).st_dev, []).append(path)
        except OSError as exc:
            failed[path] = exc
    for device, group in by_device.items():
        if _synced_by_syncfs(device, group):
            continue
        for path in group:
            try:
                fsync(path)
            except OSError as exc:
                failed[path] = exc
    return failed


def _synced_by_syncfs(device: int, group: list[str]) -> bool:
    """One syncfs on the file system holding `group`; False if each path is to be fsynced instead."""
    if not policy.use_syncfs() or device in policy.fsync_devices:
        return False
    try:
        fd = os.open(group[0], os.O_RDONLY)
    except OSError:
        return False  # its own fsync will say why
    try:
        began = time.monotonic()
        _syncfs(fd)
    except OSError as exc:
        if exc.errno in _NO_SYNCFS:
            policy.unavailable(exc)
        else:
            log.warning("syncfs_failed_fsync_each", error=str(exc), paths=len(group),
                        detail="a write-back error on this file system; each file is fsynced to find its own")
        return False
    finally:
        os.close(fd)
    policy.took(time.monotonic() - began)
    return True
