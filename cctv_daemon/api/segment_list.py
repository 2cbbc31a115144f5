"""GET /api/segments, made cheap for long days of short segments (docs/benchmarks.md "HTTP API"): one lean query
(only the columns the listing shows, on the (camera, start) index when a camera is asked), rows written straight
to JSON text, and pages of at most `limit` segments with an opaque `next` cursor (the page follows it).

A page's gaps are those inside the part of [from, to) it covers: for the camera a page resumes, from where the
previous page's last segment ended; for a camera the page leaves unfinished (the last one of a page that has a
`next`), up to its last segment's end. The pages' gaps together are the gaps of the whole range."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, tuple_

from cctv_daemon.catalog import labels, overlaps
from cctv_daemon.catalog.store import GAP_TOLERANCE_S, Catalog

DEFAULT_LIMIT = 10_000  # a day of 10 s segments (8 640) of one camera fits in one page
MAX_LIMIT = 10_000
_B64 = bytes.maketrans(b"+/", b"-_")


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last segment's camera, start, end and row id (the tie-breaker)."""

    camera: str
    start: float
    end: float
    rowid: int

    def encode(self) -> str:
        raw = json.dumps([self.camera, self.start, self.end, self.rowid], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            camera, start, end, rowid = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            if isinstance(camera, str) and all(isinstance(v, (int, float)) for v in (start, end)) \
                    and isinstance(rowid, int):
                return cls(camera, float(start), float(end), rowid)
        except (ValueError, TypeError, binascii.Error):
            pass
        raise BadCursor("not a cursor of this listing (use the `next` of the previous page)")


@dataclass(frozen=True)
class Page:
    body: str  # the JSON document
    count: int
    next: str | None


def listing(catalog: Catalog, camera: str | None, start: float, end: float, label: str | None, limit: int,
            after: Cursor | None) -> Page:
    rows = _rows(catalog, camera, start, end, limit + 1, after)
    more = len(rows) > limit
    rows = rows[:limit]
    parts = _json(rows, labels.find(catalog, camera=camera, start=start, end=end), label,
                  overlaps.find(catalog, camera, start, end))
    cursor = Cursor(rows[-1][0], rows[-1][1], rows[-1][2], rows[-1][6]) if more else None
    gaps = [] if label is not None else _gaps(rows, start, end, after, cursor)
    nxt = cursor.encode() if cursor is not None else None
    body = (f'{{"segments":[{",".join(parts)}],"gaps":{json.dumps(gaps)},'
            f'"start":{json.dumps(start)},"end":{json.dumps(end)},"next":{json.dumps(nxt)}}}')
    return Page(body, len(parts), nxt)


Row = tuple[str, float, float, int, str, "str | None", int, str]


def _rows(catalog: Catalog, camera: str | None, start: float, end: float, n: int, after: Cursor | None) -> list[Row]:
    """complete segments overlapping [start, end) ordered by camera, start: (camera, start, end, size, state,
    upload state, rowid, node id). Nothing starts earlier than start - the longest segment (segments_duration makes that
    MAX() an index lookup), which bounds the index scan."""
    stmt = catalog.cached(("segment_list", camera is None, after is None),
                          lambda: _statement(catalog, camera is not None, after is not None))
    params = {"end": end, "lo": start - catalog.longest() - 1, "start": start, "n": int(n), "camera": camera}
    if after is not None:
        params.update(a_camera=after.camera, a_start=after.start, a_id=after.rowid)
    with catalog.db.read() as conn:
        return [tuple(r) for r in conn.execute(stmt, params)]  # type: ignore[misc]  # the columns above


def _statement(catalog: Catalog, by_camera: bool, resumed: bool) -> Any:
    s, u = catalog.db.t.segments, catalog.db.t.uploads
    where = [s.c.start < bindparam("end"), s.c.start >= bindparam("lo"), s.c.end > bindparam("start")]
    if by_camera:
        # state_is(): keeps SQLite on (camera, start); on (state, start) it would read every camera's rows
        where += [s.c.camera == bindparam("camera"), catalog.state_is("complete")]
    else:
        where.append(s.c.state == "complete")
    if resumed:
        where.append(tuple_(s.c.camera, s.c.start, s.c.id)
                     > tuple_(bindparam("a_camera"), bindparam("a_start"), bindparam("a_id")))
    return (select(s.c.camera, s.c.start, s.c.end, s.c.size, s.c.state, u.c.state, s.c.id, s.c.node_id)
            .select_from(catalog.upload_join()).where(*where).order_by(s.c.camera, s.c.start, s.c.id)
            .limit(bindparam("n")))


def _labels_of(camera: str, s: float, e: float, recs: list[labels.Recording]) -> list[str]:
    return sorted({r.label for r in recs if r.label and r.camera == camera and r.start < e and r.end > s})


def _json(rows: list[Row], recs: list[labels.Recording], label: str | None,
          doubles: list[overlaps.Overlap]) -> list[str]:
    """The segments as JSON texts, the shape of models.Segment, written directly (8 640 of them make a day of 10 s
    segments). The id is ids.segment_id()'s, inlined; `duration` has 3 decimals (its value is round(end - start,
    3)); a start equal to the previous end (segments of one run touch exactly) reuses that end's text (float
    repr is the dearest part). Camera names are plain [A-Za-z0-9._-] (checked by the config); states are fixed
    words. `overlaps_with`: the other node that recorded this time too
    (catalog/overlaps.py), else null."""
    out: list[str] = []
    prev_e, prev_text = -1.0, ""
    for camera, s, e, size, state, up, _rowid, node in rows:
        seg_labels = _labels_of(camera, s, e, recs) if recs else []
        if label is not None and label not in seg_labels:
            continue
        s_text = prev_text if s == prev_e else repr(s)
        prev_e, prev_text = e, repr(e)
        sid = _b2a(b"%s|%d|%d" % (camera.encode(), round(s * 1000), round(e * 1000)),
                   newline=False).translate(_B64).rstrip(b"=").decode()
        other = overlaps.other_node(camera, node, s, e, doubles) if doubles else None
        out.append(_SEGMENT % (sid, camera, s_text, prev_text, e - s, size, state,
                               "null" if up is None else f'"{up}"', json.dumps(seg_labels) if seg_labels else "[]",
                               sid, json.dumps(node), "null" if other is None else json.dumps(other)))
    return out


_b2a = binascii.b2a_base64
_SEGMENT = ('{"id":"%s","camera":"%s","start":%s,"end":%s,"duration":%.3f,"size":%d,"state":"%s","upload_state":%s,'
            '"labels":%s,"video_url":"/api/segments/%s/video","node":%s,"overlaps_with":%s}')


def _gaps(rows: list[Row], start: float, end: float, after: Cursor | None,
          cursor: Cursor | None) -> list[dict[str, object]]:
    gaps: list[dict[str, object]] = []
    if after is not None and (not rows or rows[0][0] != after.camera) and end - after.end > GAP_TOLERANCE_S:
        gaps.append(_gap(after.camera, after.end, end))  # the camera the last page left ended there
    i = 0
    while i < len(rows):
        camera = rows[i][0]
        covered = after.end if after is not None and after.camera == camera else start
        while i < len(rows) and rows[i][0] == camera:
            s, e = rows[i][1], rows[i][2]
            if s - covered > GAP_TOLERANCE_S:
                gaps.append(_gap(camera, covered, s))
            covered = max(covered, e)
            i += 1
        unfinished = cursor is not None and cursor.camera == camera
        if not unfinished and end - covered > GAP_TOLERANCE_S:
            gaps.append(_gap(camera, covered, end))
    return gaps


def _gap(camera: str, start: float, end: float) -> dict[str, object]:
    return {"camera": camera, "start": start, "end": end, "seconds": round(end - start, 3)}
