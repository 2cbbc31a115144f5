"""api/codec.py: the RFC 6381 codec string of real fragmented MP4s made by ffmpeg, checked against ffprobe's
profile and level; unreadable files give None."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from cctv_daemon.api.codec import hevc_params, video_codec

FRAG = ["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]


def _make(out: Path, *codec: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", "2",
                    *codec, "-pix_fmt", "yuv420p", *FRAG, str(out)], check=True)
    return out


def _ffprobe(path: Path) -> dict[str, object]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_tag_string,profile,level", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    stream: dict[str, object] = json.loads(out)["streams"][0]
    return stream


@pytest.mark.parametrize("profile,idc", [("baseline", 0x42), ("main", 0x4D), ("high", 0x64)])
def test_h264(tmp_path: Path, profile: str, idc: int) -> None:
    p = _make(tmp_path / "a.mp4", "-c:v", "libx264", "-profile:v", profile)
    codec = video_codec(p)
    info = _ffprobe(p)
    assert codec is not None and re.fullmatch(r"avc1\.[0-9a-f]{6}", codec), codec
    assert int(codec[5:7], 16) == idc and int(codec[9:11], 16) == info["level"]


def test_h265_tagged_hvc1(tmp_path: Path) -> None:
    p = _make(tmp_path / "h.mp4", "-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=none")
    codec = video_codec(p)
    info = _ffprobe(p)
    assert info["codec_tag_string"] == "hvc1"
    # Main profile (1), compatibility flags, main tier, level = ffprobe's level (30 * level number)
    assert codec is not None and re.fullmatch(rf"hvc1\.1\.[0-9A-F]+\.L{info['level']}(\.[0-9A-F]{{2}})*", codec), codec


def test_hevc_params_example_from_the_spec() -> None:
    # ISO/IEC 14496-15 E.3 example: Main profile, main tier, level 3.1 (93), constraint byte 0xB0 -> "1.6.L93.B0"
    conf = bytes([1, 0x01, 0x60, 0, 0, 0, 0xB0, 0, 0, 0, 0, 0, 93])
    assert hevc_params(conf) == "1.6.L93.B0"
    high = bytes([1, 0x22, 0x40, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 120])  # Main 10, high tier, level 4
    assert hevc_params(high) == "2.2.H120.90"


def test_unreadable_is_unknown(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0\0\0\x08free" + b"x" * 100)
    assert video_codec(junk) is None
    assert video_codec(tmp_path / "missing.mp4") is None
