"""A real old ffmpeg for tests: the static 4.2.2 build shipped in the ``imageio-ffmpeg==0.4.3`` wheel on PyPI
(no ffconcat ``option`` lines, no ``-stats_period``: what Ubuntu 22.04 / Debian 11 users have on PATH).

Fetched once with pip (the only download the tests make) into ``~/.cache/cctv-daemon-tests`` and reused."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "imageio-ffmpeg==0.4.3"
MEMBER = "imageio_ffmpeg/binaries/ffmpeg-linux64-v4.2.2"
CACHE = Path(os.environ.get("CCTV_TEST_CACHE", Path.home() / ".cache" / "cctv-daemon-tests"))


class Unavailable(Exception):
    pass


def ffmpeg_4_2_2() -> Path:
    """The path of the 4.2.2 binary (downloaded on first use); Unavailable says why it cannot be had."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise Unavailable(f"the static ffmpeg 4.2.2 is a linux x86_64 binary (this is {sys.platform} "
                          f"{platform.machine()})")
    target = CACHE / "ffmpeg-4.2.2" / "ffmpeg"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cctv-old-ffmpeg-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--platform", "manylinux2010_x86_64", WHEEL, "-d", tmp],
            capture_output=True, text=True, timeout=300, check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise Unavailable(f"cannot download {WHEEL} from PyPI: {proc.stderr.strip()[-300:]}")
        part = target.with_name(f".ffmpeg.{os.getpid()}")
        with zipfile.ZipFile(wheels[0]) as z, z.open(MEMBER) as src, open(part, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        part.chmod(0o755)
        os.replace(part, target)  # atomic: a concurrent session never runs a half-written binary
    return target
