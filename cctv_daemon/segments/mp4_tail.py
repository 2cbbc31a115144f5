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
    """Walks the top-level box headers. Each pread takes _WINDOW bytes, and a header that lies wholly in what was
    read last is taken from there: ftyp and moov's headers come in one read, and each fragment's moof (a few hundred
    bytes) with the next mdat's header in one, so a segment costs about one read per fragment, not two (its
    headers' bytes are the same as reading 16 at each box)."""
    good = 0
    fragments = 0
    pending_moof = False
    pos = 0
    buf = b""  # the file's bytes from buf_at on, as read last
    buf_at = 0
    while pos + 8 <= size:
        off = pos - buf_at
        if off + 16 > len(buf):  # not wholly in the last read (or the file ends there: read again)
            buf, buf_at, off = _pread(fd, _WINDOW, pos), pos, 0
        avail = len(buf) - off  # the header's bytes: min(16, what the file holds from pos)
        if avail < 8:
            break
        box_size, kind = _HEADER.unpack_from(buf, off)
        header_len = 8
        if box_size == 1:
            if avail < 16:
                break
            box_size = _LARGE.unpack_from(buf, off + 8)[0]
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
_WINDOW = 1024  # bytes read per header look-up (a moof of a 1-2 s fragment is ~200-600 bytes)
_LARGE = struct.Struct(">Q")
