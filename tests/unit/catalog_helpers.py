"""Helpers for catalog/retention unit tests: real SQLite files and real (tiny) segment files in tmp_path."""

from __future__ import annotations

from pathlib import Path

from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.segments import names as segment_names


def put_segment(catalog: Catalog, camera: str, start: float, size: int = 1000, duration: float = 10.0,
                feed: str = "main", catalogue: bool = True) -> SegmentRow:
    path = segment_names.final_path(catalog.save_path, camera, feed, start, start + duration)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    row = SegmentRow(catalog.rel(path), camera, feed, start, start + duration, size)
    if catalogue:
        catalog.add_rows([row])
    return row


def make_uploads_table(catalog: Catalog) -> None:
    """The uploads table exactly as the shared contract defines it (owned by upload_queue.py)."""
    with catalog.transaction() as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS uploads(path TEXT PRIMARY KEY, camera TEXT NOT NULL,"
            " start REAL NOT NULL, size INTEGER NOT NULL, s3_key TEXT NOT NULL, state TEXT NOT NULL,"
            " attempts INTEGER NOT NULL"
            " DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT, etag TEXT, sha256 TEXT,"
            " queued_at REAL NOT NULL, uploaded_at REAL)")


def set_upload(catalog: Catalog, row: SegmentRow, state: str) -> None:
    with catalog.transaction() as db:
        db.execute("INSERT OR REPLACE INTO uploads (path, camera, start, size, s3_key, state, queued_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, 0)",
                   (row.path, row.camera, row.start, row.size, "k/" + row.path, state))


def files_on_disk(save_path: Path) -> set[str]:
    return {p.relative_to(save_path).as_posix() for p in save_path.rglob("*.mp4") if ".cctv" not in p.parts}
