"""Making a cut-off fragmented MP4 clean: drop an incomplete last fragment (moof without its whole mdat, or a
box that runs past the end of the file), as left by a crash, a kill or a full disk. Needs no extra space."""

from __future__ import annotations

import os
import struct
from pathlib import Path


def complete_length(path: Path | str) -> tuple[int, int]:
    """(bytes that form complete boxes ending on a whole fragment, number of media fragments in them)."""
    fd = os.open(path, _READ)
    try:
        return _complete_length(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _complete_length(fd: int, size: int) -> tuple[int, int]:
    """Walks the top-level box headers (one pread each: the hand-off's tail check reads 16 bytes per box)."""
    good = 0
    fragments = 0
    pending_moof = False
    pos = 0
    while pos + 8 <= size:
        header = _pread(fd, 16, pos)
        if len(header) < 8:
            break
        box_size, kind = _HEADER.unpack_from(header)
        header_len = 8
        if box_size == 1:
            if len(header) < 16:
                break
            box_size = _LARGE.unpack_from(header, 8)[0]
            header_len = 16
        elif box_size == 0:
            box_size = size - pos  # "to the end of the file"
        if box_size < header_len or pos + box_size > size:
            break
        end = pos + box_size
        if kind == b"moof":
            pending_moof = True
        elif kind == b"mdat":
            pending_moof = False
            fragments += 1
            good = end
        elif not pending_moof:
            good = end
        pos = end
    return good, fragments


def truncate_incomplete_tail(path: Path | str) -> tuple[int, int]:
    """Cut the file after its last complete fragment. Returns (bytes removed, media fragments kept)."""
    removed, fragments, _size = check_tail(path)
    return removed, fragments


def check_tail(path: Path | str) -> tuple[int, int, int]:
    """truncate_incomplete_tail, also returning the file's size after it (one open, one fstat)."""
    fd = os.open(path, _READ)
    try:
        size = os.fstat(fd).st_size
        good, fragments = _complete_length(fd, size)
    finally:
        os.close(fd)
    if good < size:
        with open(path, "rb+") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
    return size - good, fragments, good


_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def _seek_read(fd: int, n: int, pos: int) -> bytes:
    os.lseek(fd, pos, os.SEEK_SET)
    return os.read(fd, n)


_pread = getattr(os, "pread", _seek_read)  # Windows has no pread
_HEADER = struct.Struct(">I4s")
_LARGE = struct.Struct(">Q")
