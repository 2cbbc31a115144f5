"""Dropping an incomplete last fragment of a real fragmented MP4 made by ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cctv_daemon.recording.ffmpeg_command import SEGMENT_FORMAT_OPTIONS
from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
from cctv_daemon.segments import mp4_tail
from cctv_daemon.segments.mp4_tail import check_tail, complete_length, truncate_incomplete_tail
from tests.support.media import decode_ok


def make_fmp4(path: Path) -> None:
    opts = SEGMENT_FORMAT_OPTIONS.split(":")[0]
    subprocess.run([find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "3",
                    "-c:v", "libx264", "-g", "10", "-f", "mp4", "-movflags", opts.split("=", 1)[1], str(path)],
                   check=True)


def test_whole_file_is_left_alone(tmp_path: Path) -> None:
    f = tmp_path / "a.mp4"
    make_fmp4(f)
    size = f.stat().st_size
    assert truncate_incomplete_tail(f) == (0, 3)
    assert f.stat().st_size == size


def test_cut_in_the_middle_of_a_fragment_is_cut_back_to_the_last_whole_one(tmp_path: Path) -> None:
    f = tmp_path / "a.mp4"
    make_fmp4(f)
    size = f.stat().st_size
    with f.open("rb+") as fh:
        fh.truncate(size - 700)  # like ENOSPC or a power cut mid-write
    assert not decode_ok(f)
    removed, kept = truncate_incomplete_tail(f)
    assert removed > 0 and kept == 2
    assert decode_ok(f)
    assert complete_length(f) == (f.stat().st_size, 2)


def test_header_only_file_has_no_fragment(tmp_path: Path) -> None:
    f = tmp_path / "a.mp4"
    make_fmp4(f)
    assert complete_length(f)[1] == 3
    with f.open("rb+") as fh:
        fh.truncate(900)
    assert truncate_incomplete_tail(f)[1] == 0


def test_check_tail_returns_the_size_it_leaves(tmp_path: Path) -> None:
    """The hand-off takes the segment's size from the tail check (no stat of its own)."""
    f = tmp_path / "a.mp4"
    make_fmp4(f)
    size = f.stat().st_size
    assert check_tail(f) == (0, 3, size)
    with f.open("rb+") as fh:
        fh.truncate(size - 700)
    removed, kept, left = check_tail(f)
    assert (removed, kept) == (size - 700 - left, 2)
    assert left == f.stat().st_size


def test_the_tail_check_without_pread_reads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no os.pread: the seek-and-read fallback finds the same fragments (run here on Linux)."""
    f = tmp_path / "a.mp4"
    make_fmp4(f)
    size = f.stat().st_size
    with f.open("rb+") as fh:
        fh.truncate(size - 700)
    expected = complete_length(f)
    monkeypatch.setattr(mp4_tail, "_pread", mp4_tail._seek_read)
    assert complete_length(f) == expected
    assert check_tail(f) == (size - 700 - expected[0], 2, expected[0])


def _one_read_per_box(fd: int, size: int) -> tuple[int, int]:
    """The walk as it was before reads were windowed (16 bytes read at each box): the reference."""
    good = fragments = pos = 0
    pending_moof = False
    while pos + 8 <= size:
        header = mp4_tail._pread(fd, 16, pos)
        if len(header) < 8:
            break
        box_size, kind = mp4_tail._HEADER.unpack_from(header)
        header_len = 8
        if box_size == 1:
            if len(header) < 16:
                break
            box_size, header_len = mp4_tail._LARGE.unpack_from(header, 8)[0], 16
        elif box_size == 0:
            box_size = size - pos
        if box_size < header_len or pos + box_size > size:
            break
        if kind == b"moof":
            pending_moof = True
        elif kind == b"mdat":
            pending_moof, fragments, good = False, fragments + 1, pos + box_size
        elif not pending_moof:
            good = pos + box_size
        pos += box_size
    return good, fragments


def test_windowed_header_reads_find_what_one_read_per_box_finds(tmp_path: Path) -> None:
    """Headers taken from the last read (ninth pass) when they lie wholly in it: the same result as a read at each
    box, for boxes of every size around the window (a header cut by its end, 64-bit sizes, size 0, a torn tail)."""
    import os
    import random
    import struct

    rng = random.Random(9)
    win = mp4_tail._WINDOW
    for case in range(400):
        data = bytearray()
        for _ in range(rng.randint(0, 12)):
            kind = rng.choice([b"ftyp", b"moov", b"moof", b"mdat", b"free"])
            body = rng.choice([0, 1, 7, 8, win - 24, win - 16, win - 9, win - 8, win, rng.randint(0, 3 * win)])
            if rng.random() < 0.15:
                data += struct.pack(">I4sQ", 1, kind, 16 + body) + bytes(body)  # a 64-bit size
            else:
                data += struct.pack(">I4s", 8 + body, kind) + bytes(body)
        if rng.random() < 0.1:
            data += struct.pack(">I4s", 0, b"mdat") + bytes(rng.randint(0, 50))  # "to the end of the file"
        if data and rng.random() < 0.5:
            del data[rng.randint(0, len(data) - 1):]  # torn anywhere, a header included
        f = tmp_path / f"{case}.mp4"
        f.write_bytes(bytes(data))
        fd = os.open(f, os.O_RDONLY)
        try:
            assert mp4_tail._complete_length(fd, len(data)) == _one_read_per_box(fd, len(data)), case
        finally:
            os.close(fd)
