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
