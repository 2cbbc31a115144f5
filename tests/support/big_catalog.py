"""A large catalog for readiness tests and benchmarks: ``rows`` real (1-byte) segment files with their rows, of
which ``old`` are older than a week (a pending age prune with `retentionDays: 7`), spread over ``cameras``."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.core.clock import SystemClock
from cctv_daemon.segments import names as segment_names

SEGMENT_S = 10.0


def seed(save_path: Path, cameras: list[str], rows: int, old: int, now: float | None = None) -> int:
    """Files and rows; returns how many are older than 7 days. The state folder is ``save_path/.cctv``."""
    now = time.time() if now is None else now
    catalog = Catalog(save_path / ".cctv" / "catalog.sqlite3", save_path, SystemClock())
    per_cam, old_per_cam = rows // len(cameras), old // len(cameras)
    made_dirs: set[Path] = set()
    batch: list[SegmentRow] = []
    for cam in cameras:
        for i in range(per_cam):
            # the old ones a month old, the others the last days up to now
            start = now - 30 * 86400 + i * SEGMENT_S if i < old_per_cam else now - (per_cam - i + 2) * SEGMENT_S
            path = segment_names.final_path(save_path, cam, cam, start, start + SEGMENT_S)
            if path.parent not in made_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            # One zero byte, as a hole: the same file to read (size 1, b"\0"), but no data block to allocate, which
            # made writing it cost ~7x more than creating the file on a busy ext4 disk (5 000 files: 37 s vs 5 s).
            os.ftruncate(fd, 1)
            os.close(fd)
            batch.append(SegmentRow(catalog.rel(path), cam, cam, start, start + SEGMENT_S, 1))
            if len(batch) >= 10_000:
                catalog.add_rows(batch)
                batch = []
    catalog.add_rows(batch)
    catalog.close()
    return old_per_cam * len(cameras)
