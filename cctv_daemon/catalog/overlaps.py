"""The mark of a brief double recording after a partition (docs/scale-out.md): a node cut off from the database
goes on recording the cameras it holds (footage first) while another node, after the lease expired, takes them
over; when it reaches the database again it gives them up and notes the interval in `segment_overlaps`
(fleet/lease_store.py `note_overlap`). Both copies are kept. Read here like the labels of catalog/labels.py: the
overlaps of a listed range are read once, and each segment of either node inside one carries the other node's id
(`segments`: `overlapsWith`; the API: `overlaps_with`). `check` never treats such a pair as a problem: it looks at
this node's own rows and files only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from cctv_daemon.catalog.store import Catalog


@dataclass(frozen=True)
class Overlap:
    camera: str
    node_id: str  # recorded on while cut off from the database
    other_node: str  # took the lease meanwhile
    start: float
    end: float


def find(catalog: Catalog, camera: str | None = None, start: float | None = None,
         end: float | None = None) -> list[Overlap]:
    o = catalog.db.t.segment_overlaps
    stmt = select(o.c.camera, o.c.node_id, o.c.other_node, o.c.start, o.c.end)
    if camera is not None:
        stmt = stmt.where(o.c.camera == camera)
    if start is not None:
        stmt = stmt.where(o.c.end > start)
    if end is not None:
        stmt = stmt.where(o.c.start < end)
    return [Overlap(str(c), str(n), str(x), float(s), float(e))
            for c, n, x, s, e in catalog.rows_of(stmt.order_by(o.c.camera, o.c.start))]


def other_node(camera: str, node_id: str, start: float, end: float, overlaps: Iterable[Overlap]) -> str | None:
    """The other node that recorded this segment's time too (None: recorded once)."""
    for ov in overlaps:
        if ov.camera == camera and ov.start < end and ov.end > start:
            if ov.node_id == node_id:
                return ov.other_node
            if ov.other_node == node_id:
                return ov.node_id
    return None
