"""Acceptance audit: the catalog's -wal file (on the recording disk) grew to ~4 MB and never shrank: SQLite's
autocheckpoint empties the WAL but leaves the file at its high-water size. Every write connection now sets
`journal_size_limit` (sqlite_db.JOURNAL_SIZE_LIMIT), so the file is truncated back to it once a checkpoint has
emptied it. Real SQLite, the catalog's and the upload queue's own connections."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cctv_daemon.catalog import sqlite_db
from cctv_daemon.catalog.engine import CatalogDb
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.upload.queue import UploadQueue
from tests.unit.catalog_helpers import put_segment


def _pragma(db: CatalogDb, name: str) -> int:
    with db.mode("NONE") as conn:
        return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())


def _wal_size(cat: Catalog) -> int:
    wal = Path(f"{cat.path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_wal_is_truncated_to_the_limit_after_a_checkpoint(tmp_path: Path) -> None:
    limit = sqlite_db.JOURNAL_SIZE_LIMIT
    assert 0 < limit <= 4 * 1024 * 1024
    save = tmp_path / "rec"
    cat = Catalog.for_state_dir(save / ".cctv", save)
    queue = UploadQueue(cat.path)
    try:
        assert _pragma(cat.db, "journal_size_limit") == limit
        assert _pragma(queue.db, "journal_size_limit") == limit
        start, high = time.time() - 86_400, 0
        for i in range(5000):  # one commit per segment, as the daemon does, until the WAL has outgrown the limit
            put_segment(cat, f"cam{i % 4}", start + i * 10.0, size=10)
            high = max(high, _wal_size(cat))
            if high > 2 * limit:
                break
        assert high > 2 * limit, f"the WAL never outgrew the limit ({high} bytes)"
        with cat.db.mode("NONE") as conn:  # what the autocheckpoint does after a commit
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        assert busy == 0
        put_segment(cat, "cam0", start + 10 * 50_000.0, size=10)  # the next commit restarts the WAL
        size = _wal_size(cat)
        assert 0 < size <= limit, f"-wal is {size} bytes after a checkpoint (high-water {high}, limit {limit})"
        assert os.path.getsize(cat.path) > 0
    finally:
        queue.close()
        cat.close()
