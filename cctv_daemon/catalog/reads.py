"""The catalog's reads (a mixin of catalog/store.py Catalog), in SQLAlchemy Core so that one query runs on SQLite,
PostgreSQL and MySQL. Listing (segments(), get()) sees every node's rows; what acts on files (totals, oldest,
rows_in_state, live_sizes, newest_*) sees this node's own rows only (on SQLite every row is its own)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select, true

from cctv_daemon.catalog.engine import CatalogDb
from cctv_daemon.catalog.rows import LIVE_STATES, STATES, UPLOADED, SegmentRow


class CatalogReads:
    db: CatalogDb

    # -- building blocks ------------------------------------------------------------------------------------
    def own(self, col: Any) -> ColumnElement[bool]:
        """`col` (a node_id column) is this node's, or TRUE on a single-node (SQLite) catalog."""
        return col == self.db.node_id if self.db.scoped else true()

    def state_is(self, state: str) -> ColumnElement[bool]:
        """`state = X` that SQLite does not answer from the (state, start) index (it would read every camera's
        rows there when a (camera, start) range is asked: the former `+s.state`)."""
        col = self.db.t.segments.c.state
        return (col.concat("") if self.db.dialect == "sqlite" else col) == state

    def upload_join(self) -> Any:
        s, u = self.db.t.segments, self.db.t.uploads
        return s.outerjoin(u, and_(u.c.path == s.c.path, u.c.node_id == s.c.node_id))

    def cached(self, key: object, build: Callable[[], Any]) -> Any:
        """A statement built once per database (with bindparams): building costs more than running on SQLite."""
        found = self.db.cache.get(key)  # type: ignore[call-overload]
        if found is None:
            found = self.db.cache[key] = build()  # type: ignore[index]
        return found

    def longest(self) -> float:
        """The longest segment (bounds every range scan: nothing starts earlier than start - longest)."""
        s = self.db.t.segments
        stmt = self.cached("longest", lambda: select(func.coalesce(func.max(s.c.duration), 0)))
        with self.db.read() as conn:
            return float(conn.execute(stmt).scalar_one())

    def rows_of(self, stmt: Select[Any]) -> list[Any]:
        with self.db.read() as conn:
            return list(conn.execute(stmt).all())

    # -- segments -------------------------------------------------------------------------------------------
    def _select(self, where: Sequence[ColumnElement[bool]], states: tuple[str, ...], order: bool = False,
                limit: int | None = None) -> list[SegmentRow]:
        s, u = self.db.t.segments, self.db.t.uploads
        stmt = (select(s.c.path, s.c.camera, s.c.feed_id, s.c.start, s.c.end, s.c.size, s.c.state, u.c.state,
                       s.c.media_duration, s.c.node_id)
                .select_from(self.upload_join()).where(*where, s.c.state.in_(states)))
        if order:
            stmt = stmt.order_by(s.c.camera, s.c.start)
        if limit:
            stmt = stmt.order_by(s.c.start).limit(int(limit))
        make = SegmentRow._make
        return [make(r) for r in self.rows_of(stmt)]

    def get(self, rel_path: str, own_only: bool = False) -> SegmentRow | None:
        """The row of a path (this node's first, when another node has one of the same name)."""
        s = self.db.t.segments
        where = [s.c.path == rel_path, self.own(s.c.node_id)] if own_only else [s.c.path == rel_path]
        rows = self._select(where, STATES)
        mine = [r for r in rows if r.node_id == self.db.node_id]
        found = mine or rows
        return found[0] if found else None

    def get_live(self, rel_path: str, own_only: bool = False) -> SegmentRow | None:
        row = self.get(rel_path, own_only)
        return row if row is not None and row.state in LIVE_STATES else None

    def segments(self, camera: str | None = None, start: float | None = None, end: float | None = None,
                 states: tuple[str, ...] = ("complete",), own_only: bool = False) -> list[SegmentRow]:
        """Segments overlapping [start, end), ordered by camera then start (every node's, unless own_only)."""
        s = self.db.t.segments
        where: list[ColumnElement[bool]] = []
        if camera is not None:
            where.append(s.c.camera == camera)
        if end is not None:
            where.append(s.c.start < end)
        if start is not None:
            # Bounded scan of the (camera, start) index: nothing starts earlier than start - longest segment.
            where += [s.c.start >= start - self.longest() - 1, s.c.end > start]
        if own_only:
            where.append(self.own(s.c.node_id))
        return self._select(where, states, order=True)

    def oldest(self, camera: str | None = None, uploaded: bool | None = None, limit: int = 100,
               before: float | None = None) -> list[SegmentRow]:
        """Deletion candidates (this node's): complete segments, oldest first; `uploaded` True = only those whose
        upload is verified, False = only the others, None = all."""
        s, u, r = self.db.t.segments, self.db.t.uploads, self.db.t.recordings
        where: list[ColumnElement[bool]] = [self.own(s.c.node_id)]
        if camera is not None:
            where.append(s.c.camera == camera)
        if before is not None:
            where.append(s.c.end <= before)
        if uploaded is True:
            where.append(u.c.state == UPLOADED)
        elif uploaded is False:
            where.append(or_(u.c.state.is_(None), u.c.state != UPLOADED))
        # a recording marked keep (catalog/labels.py) protects its segments from deletion candidates
        where.append(~exists().where(r.c.keep == 1, r.c.camera == s.c.camera, r.c.start < s.c.end,
                                     r.c.end > s.c.start))
        return self._select(where, ("complete",), limit=limit)

    # -- sums -----------------------------------------------------------------------------------------------
    def totals(self) -> dict[str, tuple[int, int]]:
        """camera -> (segments, bytes) of this node's live segments (kept with every change; O(cameras))."""
        t = self.db.t.segment_totals
        stmt = self.cached("totals", lambda: select(t.c.camera, func.sum(t.c.count), func.sum(t.c.bytes))
                           .where(self.own(t.c.node_id)).group_by(t.c.camera))  # status reads it every 5 s
        rows = self._raw_rows("totals", stmt)
        if rows is None:
            rows = self.rows_of(stmt)
        return {str(cam): (int(n), int(b)) for cam, n, b in rows if int(n) > 0}

    def _raw_rows(self, key: str, stmt: Select[Any]) -> list[Any] | None:
        """A parameterless statement run on the writable SQLite file's sqlite3 connection itself (compiled to SQL
        text once): SQLAlchemy's per-execution work cost ~0.5 ms of the main loop's CPU for the totals read every
        5 s (docs/benchmarks.md). None where that does not apply (another backend, a read-only file, the general
        path chosen, a statement with parameters) or on any SQLite error: the caller runs the general path, which
        raises what it raised before."""
        raw = self.db.sqlite_conn
        if raw is None or not self.db.raw_writes:
            return None
        sql = self.cached(("raw", key), lambda: _parameterless_sql(self.db, stmt))
        if not sql:
            return None
        try:
            with self.db.lock:
                return raw.execute(sql).fetchall()
        except sqlite3.Error:
            return None

    def total_bytes(self) -> int:
        return sum(b for _n, b in self.totals().values())

    def not_uploaded(self) -> tuple[int, int]:
        """(segments, bytes) of complete segments without a verified upload (a full scan: not for the main loop)."""
        s, u = self.db.t.segments, self.db.t.uploads
        stmt = (select(func.count(), func.coalesce(func.sum(s.c.size), 0)).select_from(self.upload_join())
                .where(self.own(s.c.node_id), s.c.state == "complete",
                       or_(u.c.state.is_(None), u.c.state != UPLOADED)))
        n, b = self.rows_of(stmt)[0]
        return int(n), int(b)

    def _per_camera(self, agg: Any) -> dict[str, float]:
        s = self.db.t.segments
        stmt = select(s.c.camera, agg).where(self.own(s.c.node_id)).group_by(s.c.camera)
        return {str(cam): float(v) for cam, v in self.rows_of(stmt)}

    def newest_start(self) -> dict[str, float]:
        return self._per_camera(func.max(self.db.t.segments.c.start))

    def newest_end(self) -> dict[str, float]:
        """camera -> the latest end of any of its segments (no new segment may start before it)."""
        return self._per_camera(func.max(self.db.t.segments.c.end))

    def rows_in_state(self, state: str) -> list[tuple[str, float]]:
        s = self.db.t.segments
        stmt = select(s.c.path, s.c.state_at).where(self.own(s.c.node_id), s.c.state == state)
        return [(str(p), float(t)) for p, t in self.rows_of(stmt)]

    def live_sizes(self) -> dict[str, int]:
        s = self.db.t.segments
        stmt = select(s.c.path, s.c.size).where(self.own(s.c.node_id), s.c.state.in_(LIVE_STATES))
        return {str(p): int(n) for p, n in self.rows_of(stmt)}

    def cameras(self) -> list[str]:
        """Every camera with a row (any node)."""
        s = self.db.t.segments
        return [str(c) for (c,) in self.rows_of(select(s.c.camera).distinct())]

    def lost_since(self, reason_like: str, since: float) -> tuple[int, int, float | None]:
        """(count, bytes, oldest start) of this node's rows deleted with a reason LIKE `reason_like` after `since`."""
        s = self.db.t.segments
        stmt = (select(func.count(), func.coalesce(func.sum(s.c.size), 0), func.min(s.c.start))
                .where(self.own(s.c.node_id), s.c.reason.like(reason_like), s.c.state_at > since))
        n, b, oldest = self.rows_of(stmt)[0]
        return int(n), int(b), None if oldest is None else float(oldest)

    def paths_where(self, camera: str, *conds: ColumnElement[bool], newest_first: bool = False,
                    limit: int | None = None) -> list[str]:
        """Paths of `camera`'s segments matching `conds` (for the API's small lookups), ordered by start."""
        s = self.db.t.segments
        stmt = select(s.c.path).where(s.c.camera == camera, *conds)
        stmt = stmt.order_by(s.c.start.desc() if newest_first else s.c.start)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [str(p) for (p,) in self.rows_of(stmt)]

    def paths_matching(self, camera: str, start: tuple[float, float], end: tuple[float, float]) -> list[str]:
        """Paths of `camera`'s rows with start and end within these bounds, newest state change first."""
        s = self.db.t.segments
        stmt = (select(s.c.path).where(s.c.camera == camera, s.c.start >= start[0], s.c.start <= start[1],
                                       s.c.end >= end[0], s.c.end <= end[1]).order_by(s.c.state_at.desc()))
        return [str(p) for (p,) in self.rows_of(stmt)]

    def recorded_since(self, now: float, since: float) -> dict[str, tuple[float, int]]:
        """camera -> (seconds, bytes) of footage in [since, now] (rows not missing; the metrics)."""
        s = self.db.t.segments
        secs = case((s.c.end < now, s.c.end), else_=now) - case((s.c.start > since, s.c.start), else_=since)
        stmt = (select(s.c.camera, func.coalesce(func.sum(secs), 0), func.coalesce(func.sum(s.c.size), 0))
                .where(s.c.end > since, s.c.state != "missing").group_by(s.c.camera))
        return {str(cam): (float(d), int(b)) for cam, d, b in self.rows_of(stmt)}

    def uploaded_key(self, rel_path: str, node_id: str = "") -> str | None:
        """The S3 key of a verified upload of this file (of `node_id`'s row when given: a shared catalog)."""
        u = self.db.t.uploads
        cond = [u.c.path == rel_path, u.c.state == UPLOADED] + ([u.c.node_id == node_id] if node_id else [])
        rows = self.rows_of(select(u.c.s3_key).where(*cond).limit(1))
        return str(rows[0][0]) if rows else None

    def uploaded_keys(self, rows: Sequence[SegmentRow]) -> dict[tuple[str, str], str]:
        """(path, node id) -> S3 key of these rows' verified uploads (any node's; an export reading from S3)."""
        u = self.db.t.uploads
        paths, out = sorted({r.path for r in rows}), {}
        for i in range(0, len(paths), 500):
            stmt = select(u.c.path, u.c.node_id, u.c.s3_key).where(u.c.path.in_(paths[i:i + 500]),
                                                                   u.c.state == UPLOADED)
            out.update({(str(p), str(n)): str(k) for p, n, k in self.rows_of(stmt)})
        return out

    def upload_state_counts(self) -> dict[str, int]:
        u = self.db.t.uploads
        return {str(st): int(n) for st, n in
                self.rows_of(select(u.c.state, func.count()).where(self.own(u.c.node_id)).group_by(u.c.state))}


def _parameterless_sql(db: CatalogDb, stmt: Select[Any]) -> str:
    """The statement's SQL text for the sqlite3 connection, or "" when it needs parameters."""
    compiled = stmt.compile(dialect=db.engine.dialect)
    return "" if compiled.params or compiled.positiontup else str(compiled.string)
