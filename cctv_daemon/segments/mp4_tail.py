"""Making a cut-off fragmented MP4 clean: drop an incomplete last fragment (moof without its whole mdat, or a
box that runs past the end of the file), as left by a crash, a kill or a full disk. Needs no extra space."""

from __future__ import annotations

import os
import struct
from pathlib import Path


def complete_length(path: Path | str) -> tuple[int, int]:
    """(bytes that form complete boxes ending on a whole fragment, number of media fragments in them)."""
    size = os.stat(path).st_size
    good = 0
    fragments = 0
    pending_moof = False
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            header = f.read(16)
            box_size, kind = struct.unpack(">I4s", header[:8])
            header_len = 8
            if box_size == 1:
                if len(header) < 16:
                    break
                box_size = struct.unpack(">Q", header[8:16])[0]
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
    good, fragments = complete_length(path)
    size = os.stat(path).st_size
    if good < size:
        with open(path, "rb+") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
    return size - good, fragments
