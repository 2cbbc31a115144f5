"""Test media helpers built on the ffmpeg / ffprobe command-line tools (stdlib only)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

CACHE_DIR = Path(os.environ.get("CCTV_TEST_MEDIA_CACHE", Path(tempfile.gettempdir()) / "cctv-test-media"))


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise RuntimeError(f"{name} not found on PATH (Debian package 'ffmpeg')")
    return exe


def make_h264(
    path: str | os.PathLike[str] | None = None,
    seconds: int = 10,
    size: str = "640x360",
    fps: int = 10,
    gop: int | None = None,
) -> Path:
    """Create an Annex-B H.264 file (no B-frames, keyframe every ``gop`` frames, default one per second).

    The encoded file is made once per parameter set in a cache directory and then copied/linked to ``path``
    (or returned directly when ``path`` is None).
    """
    gop = fps if gop is None else gop
    key = hashlib.sha1(f"{seconds}|{size}|{fps}|{gop}".encode()).hexdigest()[:12]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached = CACHE_DIR / f"testsrc2-{size}-{fps}fps-g{gop}-{seconds}s-{key}.h264"
    if not cached.exists() or cached.stat().st_size == 0:
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        cmd = [
            _tool("ffmpeg"), "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", str(gop), "-keyint_min", str(gop),
            "-sc_threshold", "0", "-threads", "1", "-pix_fmt", "yuv420p", "-f", "h264", str(tmp),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg failed to make {cached}: {proc.stderr.strip()}")
        os.replace(tmp, cached)  # atomic: concurrent callers never see a partial file
    if path is None:
        return cached
    target = Path(path)
    if target.resolve() != cached.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached, target)
    return target


def probe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return ``{"duration": float|None, "video_codec": str|None, "audio_codec": str|None, "raw": {...}}``."""
    cmd = [
        _tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffprobe failed on {path}: {proc.stderr.strip()}")
    raw: dict[str, Any] = json.loads(proc.stdout or "{}")
    streams: list[dict[str, Any]] = raw.get("streams", [])

    def codec(kind: str) -> str | None:
        for stream in streams:
            if stream.get("codec_type") == kind:
                name = stream.get("codec_name")
                return str(name) if name is not None else None
        return None

    duration = raw.get("format", {}).get("duration")
    return {
        "duration": float(duration) if duration not in (None, "N/A") else None,
        "video_codec": codec("video"),
        "audio_codec": codec("audio"),
        "raw": raw,
    }


def decode_ok(path: str | os.PathLike[str]) -> bool:
    """True when ffmpeg decodes the whole file with exit status 0 and no error output."""
    cmd = [_tool("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode == 0 and proc.stderr.strip() == ""


def coverage(segments: list[Path]) -> tuple[float, float, float]:
    """(media seconds / wall seconds, media, wall) of consecutive segments of one run.

    The wall clock is read from the files' mtimes, written by the kernel when ffmpeg flushed each segment's last
    fragment (right before closing it), so it does not depend on the daemon's scheduling. The media between the
    first and the second-to-last close is the sum of the durations of segments[1:-1]."""
    closes = [p.stat().st_mtime for p in segments]
    media = sum(float(probe(p)["duration"] or 0) for p in segments[1:-1])
    wall = closes[-2] - closes[0]
    return media / wall, media, wall


def make_h265(seconds: int = 10, size: str = "640x360", fps: int = 10) -> Path:
    """An Annex-B H.265 file (libx265, no B-frames, one keyframe per second), made once in the cache folder."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached = CACHE_DIR / f"testsrc2-{size}-{fps}fps-{seconds}s.hevc"
    if not cached.exists() or cached.stat().st_size == 0:
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        cmd = [
            _tool("ffmpeg"), "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
            "-c:v", "libx265", "-preset", "veryfast", "-x265-params", "bframes=0:log-level=error", "-bf", "0",
            "-g", str(fps), "-keyint_min", str(fps), "-pix_fmt", "yuv420p", "-f", "hevc", str(tmp),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ffmpeg failed to make {cached}: {proc.stderr.strip()}")
        os.replace(tmp, cached)
    return cached


def video_tag(path: str | os.PathLike[str]) -> str | None:
    """The sample-entry tag (``codec_tag_string``) of the first video stream, e.g. ``avc1``, ``hvc1``, ``hev1``."""
    for stream in probe(path)["raw"].get("streams", []):
        if stream.get("codec_type") == "video":
            tag = stream.get("codec_tag_string")
            return str(tag) if tag is not None else None
    return None
