"""Finding the ffmpeg binary: config ffmpegPath, else ffmpeg on PATH, else the imageio-ffmpeg wheel's."""

from __future__ import annotations

import os
import shutil


class FfmpegNotFound(Exception):
    pass


def find_ffmpeg(configured: str | None = None, *, bundled: bool = True) -> str:
    """``ffmpegPath``, else ffmpeg on PATH, else (if ``bundled``) the imageio-ffmpeg wheel's binary. Whether the
    binary can do the job is decided by ffmpeg_caps.choose_ffmpeg."""
    if configured:
        found = shutil.which(configured) or (configured if os.path.isfile(configured) else None)
        if not found:
            raise FfmpegNotFound(f"ffmpegPath: {configured!r} is not an executable file")
        return found
    on_path = shutil.which("ffmpeg")
    if on_path or not bundled:
        if on_path:
            return on_path
        raise FfmpegNotFound("no ffmpeg on PATH")
    try:
        import imageio_ffmpeg

        exe: str = imageio_ffmpeg.get_ffmpeg_exe()
        return exe
    except Exception as exc:  # the wheel raises RuntimeError when it has no binary for this platform
        raise FfmpegNotFound(
            "no ffmpeg found: set ffmpegPath in the config, put ffmpeg on PATH, or install imageio-ffmpeg"
        ) from exc
