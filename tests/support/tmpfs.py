"""A small real tmpfs for full-disk tests (we run as root in CI): `mount -t tmpfs -o size=N`, unmounted at the end.
Tests that need one skip, saying why, when mounting is not permitted. `fill()` writes a filler file until the
file system answers ENOSPC (a real full disk, not a mock)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(path: Path, size: str = "64m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(filler: Path, leave: int = 0, chunk: int = 64 * 1024) -> int:
    """Write ``filler`` until ENOSPC (then give back ``leave`` bytes); returns its size."""
    written = 0
    with open(filler, "ab", buffering=0) as f:
        block = b"\xa5" * chunk
        while True:
            try:
                written += f.write(block if chunk > 4096 else block[:4096])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if chunk <= 4096:
                    break
                chunk //= 16
                block = b"\xa5" * chunk
    if leave:
        os.truncate(filler, max(0, written - leave))
        written = max(0, written - leave)
    return written
