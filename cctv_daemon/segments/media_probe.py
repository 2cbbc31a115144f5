"""Reading a media file's duration with ffmpeg itself (ffprobe is not needed at run time)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cctv_daemon.core.child_env import ffmpeg_env


@dataclass(frozen=True)
class ProbeResult:
    duration: float  # seconds of video that demux cleanly
    errors: str  # ffmpeg's error output, empty when clean


def probe_duration(ffmpeg_exe: str, path: Path, timeout: float = 120.0) -> ProbeResult | None:
    """Demux the whole file (stream copy to the null muxer, cheap) and read the last progress time.
    None when ffmpeg cannot read the file at all (e.g. an MP4 without its index)."""
    args = [
        ffmpeg_exe,
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-c",
        "copy",
        "-f",
        "null",
        "-",
        "-progress",
        "pipe:1",
        "-nostats",
    ]
    try:
        done = subprocess.run(args, capture_output=True, timeout=timeout, check=False, env=ffmpeg_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    out_us = -1
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        if key == "out_time_us":
            try:
                out_us = max(out_us, int(value))
            except ValueError:
                pass
    if done.returncode != 0 or out_us <= 0:
        return None
    return ProbeResult(out_us / 1_000_000, done.stderr.decode("utf-8", "replace").strip())
