"""Labelled recordings (`record` with a label): one row per request in the catalog's `recordings` table (owned
here) with the camera, the label and the time range. A segment carries the labels of the recordings it overlaps,
so every segment of such a recording is found by its label. A recording marked `keep` protects its segments from
retention (Catalog.oldest skips them) until unmarked."""

from __future__ import annotations

from dataclasses import dataclass

from cctv_daemon.catalog.store import Catalog, SegmentRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    label TEXT,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    keep INTEGER NOT NULL DEFAULT 0,
    requested_by TEXT
);
CREATE INDEX IF NOT EXISTS recordings_camera_start ON recordings (camera, start);
CREATE INDEX IF NOT EXISTS recordings_label ON recordings (label);
"""


@dataclass(frozen=True)
class Recording:
    id: int
    camera: str
    label: str | None
    start: float
    end: float
    keep: bool

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "camera": self.camera, "label": self.label, "start": self.start, "end": self.end,
                "keep": self.keep}


def ensure_table(catalog: Catalog) -> None:
    with catalog.transaction() as db:
        for stmt in SCHEMA.split(";"):
            if stmt.strip():
                db.execute(stmt)


_COLS = 'id, camera, label, start, "end", keep'


def _make(row: tuple[object, ...]) -> Recording:
    i, cam, label, start, end, keep = row
    return Recording(int(str(i)), str(cam), None if label is None else str(label), float(str(start)),
                     float(str(end)), bool(keep))


def add(catalog: Catalog, camera: str, label: str | None, start: float, end: float,
        requested_by: str | None = None) -> Recording:
    with catalog.transaction() as db:
        cur = db.execute('INSERT INTO recordings (camera, label, start, "end", requested_by) VALUES (?, ?, ?, ?, ?)',
                         (camera, label, start, end, requested_by))
        rid = cur.lastrowid
    return Recording(int(rid or 0), camera, label, start, end, False)


def end_active(catalog: Catalog, camera: str, now: float) -> None:
    """The camera was stopped: its recordings that were still going end now."""
    with catalog.transaction() as db:
        db.execute('UPDATE recordings SET "end" = ? WHERE camera = ? AND "end" > ? AND start <= ?',
                   (now, camera, now, now))


def set_keep(catalog: Catalog, rid: int, keep: bool) -> Recording | None:
    with catalog.transaction() as db:
        db.execute("UPDATE recordings SET keep = ? WHERE id = ?", (int(keep), rid))
    return get(catalog, rid)


def get(catalog: Catalog, rid: int) -> Recording | None:
    rows = catalog.query(f"SELECT {_COLS} FROM recordings WHERE id = ?", (rid,))
    return _make(rows[0]) if rows else None


def find(catalog: Catalog, camera: str | None = None, label: str | None = None, start: float | None = None,
         end: float | None = None) -> list[Recording]:
    where, params = ["1 = 1"], []  # type: list[str], list[object]
    if camera is not None:
        where.append("camera = ?")
        params.append(camera)
    if label is not None:
        where.append("label = ?")
        params.append(label)
    if start is not None:
        where.append('"end" > ?')
        params.append(start)
    if end is not None:
        where.append("start < ?")
        params.append(end)
    sql = f"SELECT {_COLS} FROM recordings WHERE {' AND '.join(where)} ORDER BY camera, start"
    return [_make(r) for r in catalog.query(sql, params)]


def labels_of(seg: SegmentRow, recordings: list[Recording]) -> list[str]:
    return sorted({r.label for r in recordings
                   if r.label and r.camera == seg.camera and r.start < seg.end and r.end > seg.start})
