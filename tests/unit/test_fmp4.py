"""segments/fmp4.py on a real ffmpeg fragmented-MP4 segment: fragments are read completely, a moof rebuilt with
its own base times and all samples is byte-identical to ffmpeg's, and the joined init has no edit list."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from cctv_daemon.segments import fmp4


def make_segment(path: Path) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x90:rate=10",
                    "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "3", "-c:v", "libx264", "-preset",
                    "ultrafast", "-bf", "2", "-g", "10", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags",
                    "+frag_keyframe+empty_moov+default_base_moof", str(path)], check=True, capture_output=True)


def test_read_and_rebuild_is_identical(tmp_path: Path) -> None:
    seg = tmp_path / "s.mp4"
    make_segment(seg)
    init, moov_end = fmp4.read_init(seg)
    assert init.video_track is not None and len(init.tracks) == 2
    frags = fmp4.read_fragments(seg, init, moov_end)
    vt = init.video_track
    assert sum(t.count for f in frags for t in f.trafs if t.track_id == vt) == 30
    assert all(next(t for t in f.trafs if t.track_id == vt).sync0 for f in frags
               if any(t.track_id == vt for t in f.trafs))
    data = seg.read_bytes()
    for seq, f in enumerate(frags, 1):
        moof, ranges = fmp4.build_moof(seq, [(t, t.base_time, t.count) for t in f.trafs])
        assert moof == data[f.offset:f.offset + f.moof_size]
        # the kept samples are the whole mdat payload, in order
        assert sum(n for _o, n in ranges) == f.mdat_size - 8
        assert ranges[0][0] == f.moof_size + 8


def test_joined_init_has_no_edit_list_and_a_duration(tmp_path: Path) -> None:
    seg = tmp_path / "s.mp4"
    make_segment(seg)
    init, _ = fmp4.read_init(seg)
    out = fmp4.build_init(init, 1_800_000_000.0, 12.5)
    assert b"edts" not in out and b"elst" not in out
    i = out.index(b"mehd")
    assert struct.unpack_from(">Q", out, i + 8)[0] == round(12.5 * init.movie_timescale)
    assert out.startswith(init.ftyp)
    assert fmp4.parse_boxes(out)[1].type == b"moov"


def test_crash_cut_fragment_is_left_out(tmp_path: Path) -> None:
    seg = tmp_path / "s.mp4"
    make_segment(seg)
    init, moov_end = fmp4.read_init(seg)
    whole = fmp4.read_fragments(seg, init, moov_end)
    data = seg.read_bytes()
    seg.write_bytes(data[:whole[-1].mdat_offset + 20])
    assert len(fmp4.read_fragments(seg, init, moov_end)) == len(whole) - 1


def test_copy_range_without_kernel_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has neither copy_file_range nor sendfile (simulated here by removing them): buffered copy."""
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(bytes(range(256)) * 100_000)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    monkeypatch.delattr(os, "sendfile", raising=False)
    with src.open("rb") as s, dst.open("wb") as d:
        d.write(b"x")
        d.flush()
        fmp4.copy_range(s.fileno(), d.fileno(), 1000, 9_000_000)
    assert dst.read_bytes() == b"x" + src.read_bytes()[1000:9_001_000]
