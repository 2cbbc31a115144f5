"""Writing a joined clip: kernel copies of the source ranges, and its SHA-256 computed at the same time by a
second thread reading the same bytes (from the page cache), so hashing costs no extra pass over the output."""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path

from cctv_daemon.segments import fmp4

ProgressFn = Callable[[float, float], None]  # (seconds done, seconds total)
Item = bytes | tuple[Path, int, int]  # bytes to write, or (source file, offset, length) to copy
CHUNK = 8 << 20


def write(items: list[Item], out: Path, seconds: float, progress: ProgressFn | None) -> str:
    """Write the items (kernel copies for source ranges) while a second thread hashes the same bytes from the
    sources (page cache): the SHA-256 costs no extra pass over the output."""
    hasher = Hasher(items)
    hasher.start()
    total = sum(len(i) if isinstance(i, bytes) else i[2] for i in items) or 1
    done = 0
    fds: dict[Path, int] = {}
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    try:
        for item in items:
            if isinstance(item, bytes):
                os.write(fd, item)
                done += len(item)
                continue
            src, off, n = item
            if src not in fds:
                fds[src] = os.open(src, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            fmp4.copy_range(fds[src], fd, off, n)
            done += n
            if progress is not None:
                progress(seconds * min(done / total, 0.999), seconds)
        os.fsync(fd)
    finally:
        os.close(fd)
        for sfd in fds.values():
            os.close(sfd)
        hasher.join()
    if hasher.error is not None:
        raise hasher.error
    return hasher.digest


class Hasher(threading.Thread):
    def __init__(self, items: list[Item]) -> None:
        super().__init__(daemon=True, name="export-sha256")
        self.items = items
        self.digest = ""
        self.error: OSError | None = None

    def run(self) -> None:
        """Hash straight from the page cache through a memory map of each source (no copy into Python)."""
        h = hashlib.sha256()
        src: Path | None = None
        mapped: mmap.mmap | None = None
        try:
            for item in self.items:
                if isinstance(item, bytes):
                    h.update(item)
                    continue
                path, off, n = item
                if path != src:
                    if mapped is not None:
                        mapped.close()
                    mapped, src = None, path
                    with path.open("rb") as f:
                        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                m = mapped
                assert m is not None
                if off + n > len(m):
                    raise OSError(f"{path} ended early")
                with memoryview(m) as view:
                    h.update(view[off:off + n])
            self.digest = h.hexdigest()
        except (OSError, ValueError) as exc:
            self.error = OSError(str(exc))
        finally:
            if mapped is not None:
                mapped.close()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
