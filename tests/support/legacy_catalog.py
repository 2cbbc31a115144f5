"""A catalog file exactly as cctv-daemon made it before the versioned schema (main's catalog/store.py _SCHEMA_V1,
upload/queue.py SCHEMA, catalog/labels.py SCHEMA; `catalog_schema` version 1, totals kept by triggers), with rows,
for the adoption tests. The SQL is copied verbatim from that code."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS segments (
    path TEXT PRIMARY KEY, camera TEXT NOT NULL, feed_id TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
    duration REAL NOT NULL, size INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('complete', 'deleting', 'deleted', 'missing')),
    run_id TEXT, recovered INTEGER NOT NULL DEFAULT 0, added_at REAL NOT NULL, state_at REAL NOT NULL, reason TEXT
);
CREATE INDEX IF NOT EXISTS segments_camera_start ON segments (camera, start);
CREATE INDEX IF NOT EXISTS segments_state_start ON segments (state, start);
CREATE TABLE IF NOT EXISTS segment_totals (camera TEXT PRIMARY KEY, count INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS segments_ins AFTER INSERT ON segments
WHEN NEW.state IN ('complete', 'deleting') BEGIN
    INSERT INTO segment_totals (camera, count, bytes) VALUES (NEW.camera, 1, NEW.size)
    ON CONFLICT (camera) DO UPDATE SET count = count + 1, bytes = bytes + NEW.size;
END;
CREATE TRIGGER IF NOT EXISTS segments_del AFTER DELETE ON segments
WHEN OLD.state IN ('complete', 'deleting') BEGIN
    UPDATE segment_totals SET count = count - 1, bytes = bytes - OLD.size WHERE camera = OLD.camera;
END;
CREATE TRIGGER IF NOT EXISTS segments_upd_old AFTER UPDATE OF state, size, camera ON segments
WHEN OLD.state IN ('complete', 'deleting') BEGIN
    UPDATE segment_totals SET count = count - 1, bytes = bytes - OLD.size WHERE camera = OLD.camera;
END;
CREATE TRIGGER IF NOT EXISTS segments_upd_new AFTER UPDATE OF state, size, camera ON segments
WHEN NEW.state IN ('complete', 'deleting') BEGIN
    INSERT INTO segment_totals (camera, count, bytes) VALUES (NEW.camera, 1, NEW.size)
    ON CONFLICT (camera) DO UPDATE SET count = count + 1, bytes = bytes + NEW.size;
END;
CREATE TABLE IF NOT EXISTS catalog_schema (version INTEGER NOT NULL);
INSERT INTO catalog_schema (version) VALUES (1);
ALTER TABLE segments ADD COLUMN media_duration REAL;
CREATE INDEX IF NOT EXISTS segments_duration ON segments (duration);
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL, label TEXT, start REAL NOT NULL, "end" REAL NOT NULL,
    keep INTEGER NOT NULL DEFAULT 0, requested_by TEXT
);
"""
# the uploads table's first schema (without failures / check_remote, added in place later)
UPLOADS_V1 = """
CREATE TABLE IF NOT EXISTS uploads(path TEXT PRIMARY KEY, camera TEXT NOT NULL, start REAL NOT NULL,
    size INTEGER NOT NULL, s3_key TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT, etag TEXT, sha256 TEXT, queued_at REAL NOT NULL,
    uploaded_at REAL);
CREATE INDEX IF NOT EXISTS uploads_state_start ON uploads(state, start);
"""


def make(path: Path, segments: list[tuple[str, str, float, float, int, str]],
         uploads: list[tuple[str, str, float, int, str, str, int, str | None]] | None = None) -> dict[str, int]:
    """Write a legacy catalog: segments (path, camera, start, end, size, state), uploads (path, camera, start, size,
    s3_key, state, attempts, last_error). Returns path -> rowid of the segments."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(SCHEMA_V1 + (UPLOADS_V1 if uploads is not None else ""))
    for i, (p, cam, start, end, size, state) in enumerate(segments):
        if i == 1:  # a gap in the rowids, as deletions leave
            db.execute("INSERT INTO segments (rowid, path, camera, feed_id, start, \"end\", duration, size, state,"
                       " added_at, state_at) VALUES (40, 'x', 'x', 'x', 0, 1, 1, 1, 'deleted', 0, 0)")
            db.execute("DELETE FROM segments WHERE path = 'x'")
        db.execute('INSERT INTO segments (path, camera, feed_id, start, "end", duration, size, state, run_id,'
                   " added_at, state_at, media_duration) VALUES (?, ?, 'main', ?, ?, ?, ?, ?, 'r1', ?, ?, ?)",
                   (p, cam, start, end, end - start, size, state, start, start, end - start))
    for row in uploads or []:
        db.execute("INSERT INTO uploads(path, camera, start, size, s3_key, state, attempts, last_error, queued_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)", row)
    db.execute("INSERT INTO recordings (camera, label, start, \"end\", keep) VALUES ('gate', 'delivery', 0, 1e10, 0)")
    ids = {str(p): int(r) for r, p in db.execute("SELECT rowid, path FROM segments")}
    db.close()
    return ids
