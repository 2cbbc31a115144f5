"""Helpers for catalog/retention unit tests: real SQLite files and real (tiny) segment files in tmp_path."""

from __future__ import annotations

from pathlib import Path

from cctv_daemon.catalog import migrate
from cctv_daemon.catalog.engine import open_server, parse_url
from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.segments import names as segment_names
from cctv_daemon.upload.queue import UploadQueue


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
    """Nothing to do any more: the uploads table is part of the catalog's schema (catalog/migrations)."""


def set_upload(catalog: Catalog, row: SegmentRow, state: str) -> None:
    u = catalog.db.t.uploads
    with catalog.transaction() as db:
        db.execute(u.delete().where(u.c.path == row.path))
        db.execute(u.insert().values(node_id=catalog.node_id, path=row.path, camera=row.camera, start=row.start,
                                     size=row.size, s3_key="k/" + row.path, state=state, queued_at=0))


def open_queue(db_file: Path, url: str | None, node_id: str = "node-a") -> UploadQueue:
    """An upload queue on the SQLite file `db_file` (url None) or on the database at `url` (fresh per test)."""
    if url is None:
        return UploadQueue(db_file, node_id=node_id)
    db = open_server(parse_url(url), node_id, "")
    migrate.upgrade(db)
    return UploadQueue(db)


def queue_of(catalog: Catalog) -> UploadQueue:
    """An upload queue on the catalog's database, with its own connection(s) (as the daemon makes it)."""
    if catalog.db.sqlite_path is not None:
        return UploadQueue(catalog.db.sqlite_path, node_id=catalog.node_id)
    return UploadQueue(open_server(catalog.db.url, catalog.node_id, catalog.prefix))


def files_on_disk(save_path: Path) -> set[str]:
    return {p.relative_to(save_path).as_posix() for p in save_path.rglob("*.mp4") if ".cctv" not in p.parts}
