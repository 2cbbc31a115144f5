"""Is `storageConfig.minFreeDiskGB` a floor the disk under savePath can meet? Checked by `check-config` and `run`
(preflight) and again by retention while running (catalog/retention.py).

- Larger than the whole disk: a config error (exit 2), at `check-config` and at `run`.
- Larger than the free space plus all of our own footage on it: pruning could never meet it, so retention would
  delete everything for nothing. `check-config` reports it as an error (exit 2); `run` records anyway and says so
  loudly (an error log line, `status`), and retention deletes nothing for that floor.
- A disk full of our own footage is not an error: pruning fixes it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from cctv_daemon.config.model import Config
from cctv_daemon.core import constants as c

GB = 1_000_000_000


def _existing(path: Path) -> Path | None:
    return next((p for p in (path, *path.parents) if p.exists()), None)


def our_footage_bytes(state_dir: Path, url: str | None = None) -> int | None:
    """Bytes of live segments the catalog knows (read-only; 0 when there is no catalog yet, None when it cannot
    be read: then nothing is claimed about the floor). A database server's catalog (catalog.url) is not asked
    here: None."""
    if url and not url.lower().startswith("sqlite:"):
        return None
    db = state_dir / c.CATALOG_FILENAME if not url else Path(url.split(":///", 1)[-1])
    if not db.is_file():
        return 0
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
        try:
            row = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM segment_totals").fetchone()
        finally:
            conn.close()
        return int(row[0])
    except (sqlite3.Error, ValueError, TypeError):
        return None


def floor_problems(config: Config) -> tuple[str | None, str | None]:
    """(error for every command, error for `check-config`), each naming storageConfig.minFreeDiskGB, or None."""
    sc = config.storageConfig
    floor = int(sc.minFreeDiskGB * GB)
    where = _existing(sc.savePath)
    if floor <= 0 or where is None:
        return None, None
    try:
        usage = shutil.disk_usage(where)
    except OSError:
        return None, None
    gb = f"{sc.minFreeDiskGB:g} GB"
    if floor > usage.total:
        return (f"storageConfig.minFreeDiskGB: {gb} is more than the whole disk under {sc.savePath} "
                f"({usage.total / GB:.2f} GB); lower it (0 turns the floor off)"), None
    ours = our_footage_bytes(sc.state_dir, config.catalog.url)
    if ours is not None and floor > usage.free + ours:
        return None, (f"storageConfig.minFreeDiskGB: {gb} cannot be met: the disk under {sc.savePath} has "
                      f"{usage.free / GB:.2f} GB free and {ours / GB:.2f} GB of our footage; deleting all of it "
                      f"would not reach the floor. Lower minFreeDiskGB or free space (`run` records anyway and "
                      f"deletes nothing for this floor)")
    return None, None
