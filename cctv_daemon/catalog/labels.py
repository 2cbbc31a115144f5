"""Labelled recordings (`record` with a label): one row per request in the catalog's `recordings` table (owned
here; defined in catalog/schema.py) with the camera, the label and the time range. A segment carries the labels of
the recordings it overlaps, so every segment of such a recording is found by its label. A recording marked `keep`
protects its segments from retention (Catalog.oldest skips them) until unmarked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update

from cctv_daemon.catalog.store import Catalog, SegmentRow


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
    """Nothing left to do: the table is part of the catalog's schema (catalog/migrations)."""


def _make(row: Any) -> Recording:
    i, cam, label, start, end, keep = row
    return Recording(int(i), str(cam), None if label is None else str(label), float(start), float(end), bool(keep))


def _cols(catalog: Catalog) -> Any:
    r = catalog.db.t.recordings
    return select(r.c.id, r.c.camera, r.c.label, r.c.start, r.c.end, r.c.keep)


def add(catalog: Catalog, camera: str, label: str | None, start: float, end: float,
        requested_by: str | None = None) -> Recording:
    r = catalog.db.t.recordings
    with catalog.transaction() as db:
        rid = db.execute(r.insert().values(node_id=catalog.node_id, camera=camera, label=label, start=start,
                                           end=end, requested_by=requested_by)).inserted_primary_key
    rid = rid[0] if rid else 0
    return Recording(int(rid or 0), camera, label, start, end, False)


def end_active(catalog: Catalog, camera: str, now: float) -> None:
    """The camera was stopped: its recordings that were still going end now."""
    r = catalog.db.t.recordings
    with catalog.transaction() as db:
        db.execute(update(r).where(r.c.camera == camera, r.c.end > now, r.c.start <= now).values(end=now))


def set_keep(catalog: Catalog, rid: int, keep: bool) -> Recording | None:
    r = catalog.db.t.recordings
    with catalog.transaction() as db:
        db.execute(update(r).where(r.c.id == rid).values(keep=int(keep)))
    return get(catalog, rid)


def get(catalog: Catalog, rid: int) -> Recording | None:
    r = catalog.db.t.recordings
    rows = catalog.rows_of(_cols(catalog).where(r.c.id == rid))
    return _make(rows[0]) if rows else None


def find(catalog: Catalog, camera: str | None = None, label: str | None = None, start: float | None = None,
         end: float | None = None) -> list[Recording]:
    given = (camera is not None, label is not None, start is not None, end is not None)

    def build() -> Any:
        r = catalog.db.t.recordings
        conds = [r.c.camera == bindparam("camera"), r.c.label == bindparam("label"), r.c.end > bindparam("start"),
                 r.c.start < bindparam("end")]
        wanted = [c for c, g in zip(conds, given, strict=True) if g]
        return _cols(catalog).where(*wanted).order_by(r.c.camera, r.c.start)

    stmt = catalog.cached(("labels.find", given), build)
    params = {k: v for k, v in (("camera", camera), ("label", label), ("start", start), ("end", end))
              if v is not None}
    with catalog.db.read() as conn:
        return [_make(row) for row in conn.execute(stmt, params)]


def labels_of(seg: SegmentRow, recordings: list[Recording]) -> list[str]:
    return sorted({r.label for r in recordings
                   if r.label and r.camera == seg.camera and r.start < seg.end and r.end > seg.start})
