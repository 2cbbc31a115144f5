"""A file's pages in the page cache as the kernel counts them: cachestat(2) (Linux >= 6.5), used to check that a
segment's data really was written back (no dirty page, none under write-back) when the catalog sees it."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

SYS_CACHESTAT = 451  # the same number on every architecture (the generic syscall table, Linux 6.5)


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [("nr_cache", ctypes.c_uint64), ("nr_dirty", ctypes.c_uint64), ("nr_writeback", ctypes.c_uint64),
                ("nr_evicted", ctypes.c_uint64), ("nr_recently_evicted", ctypes.c_uint64)]


@dataclass(frozen=True)
class PageCounts:
    cached: int
    dirty: int
    writeback: int


def _call(fd: int) -> PageCounts | None:
    libc = ctypes.CDLL(None, use_errno=True)
    rng, out = _Range(0, 0), _Stat()  # len 0: to the end of the file
    if libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(rng), ctypes.byref(out), 0) != 0:
        return None
    return PageCounts(out.nr_cache, out.nr_dirty, out.nr_writeback)


def page_counts(path: Path | str) -> PageCounts | None:
    """The file's cached, dirty and under-write-back pages; None where cachestat(2) is missing."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return _call(fd)
    finally:
        os.close(fd)


def available() -> bool:
    try:
        return os.name == "posix" and page_counts(__file__) is not None
    except OSError:
        return False
