"""The catalog's writes on segments and the exact `segment_totals` kept with them, in the same transaction, on
every backend: each change reads the row it changes first (FOR UPDATE where the backend has it; SQLite's write
transaction is exclusive), then adds the difference to the (node, camera) totals with one atomic upsert
(`count = count + n`), so concurrent writers never lose a count."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Connection, and_, bindparam, select, true, update

from cctv_daemon.catalog.engine import CatalogDb
from cctv_daemon.catalog.rows import LIVE_STATES, SegmentRow

_CHUNK = 400  # paths per IN (...) lookup


def _upsert(dialect: str) -> Any:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    return {"postgresql": postgresql.insert, "mysql": mysql.insert}.get(dialect, sqlite.insert)


def _statements(db: CatalogDb) -> dict[str, Any]:
    """The write path's statements, built once per database (building them costs more than running them on
    SQLite; SQLAlchemy then reuses their compiled form)."""
    cached = db.cache.get("writes")
    if cached is not None:
        return cast("dict[str, Any]", cached)
    s, t = db.t.segments, db.t.segment_totals
    up = _upsert(db.dialect)(t).values(node_id=bindparam("n"), camera=bindparam("c"), count=bindparam("dc"),
                                       bytes=bindparam("db"))
    if db.dialect == "mysql":
        up = up.on_duplicate_key_update(count=t.c.count + up.inserted.count, bytes=t.c.bytes + up.inserted.bytes)
    else:
        up = up.on_conflict_do_update(index_elements=[t.c.node_id, t.c.camera],
                                      set_={"count": t.c.count + up.excluded.count,
                                            "bytes": t.c.bytes + up.excluded.bytes})
    found = _locked(db, select(s.c.path, s.c.state, s.c.node_id).where(
        _mine(db, s.c.node_id), s.c.path.in_(bindparam("paths", expanding=True))))
    stmts = {"bump": up, "found": found, "insert": s.insert()}
    db.cache["writes"] = stmts
    return stmts


_ROW_KEYS = ("node_id", "path", "camera", "feed_id", "start", "end", "duration", "size", "state", "run_id",
             "recovered", "added_at", "state_at", "media_duration")


def _raw_sql(db: CatalogDb) -> tuple[str, str, str]:
    """(look-up, insert, totals upsert) of one row as SQL text for the sqlite3 connection, compiled once from the
    same Core statements the general path runs (so the table names, the prefix and the columns stay theirs)."""
    cached = db.cache.get("writes_raw")
    if cached is not None:
        return cast("tuple[str, str, str]", cached)
    s = db.t.segments
    dialect = db.engine.dialect

    def compiled(stmt: Any, order: tuple[str, ...], keys: list[str] | None = None) -> str:
        c = stmt.compile(dialect=dialect, column_keys=keys)
        assert tuple(c.positiontup or ()) == order, (c.positiontup, order)  # qmark: parameters in this order
        return str(c.string)

    found = compiled(select(s.c.state).where(s.c.path == bindparam("p")), ("p",))
    insert = compiled(s.insert(), _ROW_KEYS, list(_ROW_KEYS))
    upsert = compiled(_statements(db)["bump"], ("n", "c", "dc", "db"))
    db.cache["writes_raw"] = sql = (found, insert, upsert)
    return sql


def add_one_sqlite(raw: sqlite3.Connection, db: CatalogDb, r: SegmentRow, run_id: str | None, recovered: bool,
                   now: float) -> bool:
    """The hand-off's hot path on a SQLite file (the caller holds db.lock, no transaction open): a NEW row and its
    totals in one BEGIN IMMEDIATE transaction on the sqlite3 connection itself, the same three statements as
    add_rows() without SQLAlchemy's per-statement work (~0.3 ms of CPU a segment, docs/benchmarks.md). False,
    having changed nothing, when the path has a row already (kept or revived: add_rows() decides) or on any
    SQLite error (add_rows() then runs, and raises it as SQLAlchemy does)."""
    found, insert, upsert = _raw_sql(db)
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        return False
    try:
        if raw.execute(found, (r.path,)).fetchone() is not None:
            raw.execute("ROLLBACK")
            return False
        node = db.node_id
        raw.execute(insert, (node, r.path, r.camera, r.feed_id, r.start, r.end, r.end - r.start, r.size, "complete",
                             run_id, int(recovered), now, now, r.media_duration))
        raw.execute(upsert, (node, r.camera, 1, r.size))
        raw.execute("COMMIT")
        return True
    except sqlite3.Error:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        return False


def bump(conn: Connection, db: CatalogDb, node: str, deltas: dict[str, tuple[int, int]]) -> None:
    """Add (count, bytes) to each camera's totals of `node`."""
    stmt = _statements(db)["bump"]
    for camera, (n, b) in sorted(deltas.items()):
        if n or b:
            conn.execute(stmt, {"n": node, "c": camera, "dc": n, "db": b})


def _add(deltas: dict[str, tuple[int, int]], camera: str, n: int, b: int) -> None:
    old = deltas.get(camera, (0, 0))
    deltas[camera] = (old[0] + n, old[1] + b)


def _mine(db: CatalogDb, col: Any) -> Any:
    """This node's rows (a SQLite catalog is single-node: all of them, whatever node wrote them)."""
    return col == db.node_id if db.scoped else true()


def _locked(db: CatalogDb, stmt: Any) -> Any:
    return stmt.with_for_update() if db.dialect != "sqlite" else stmt


def add_rows(conn: Connection, db: CatalogDb, rows: Iterable[SegmentRow], run_id: str | None, recovered: bool,
             now: float) -> int:
    """Insert rows (state 'complete', this node's); an existing live row is kept, a 'deleted'/'missing' row whose
    file is back is revived. Returns how many rows were added or revived."""
    s = db.t.segments
    node = db.node_id
    todo = list(rows)
    deltas: dict[str, dict[str, tuple[int, int]]] = {}  # node -> camera -> (count, bytes)
    n = 0
    for i in range(0, len(todo), _CHUNK):
        chunk = todo[i:i + _CHUNK]
        found = {str(p): (str(st), str(nd)) for p, st, nd in conn.execute(
            _statements(db)["found"], {"paths": [r.path for r in chunk]})}
        new: list[dict[str, Any]] = []
        for r in chunk:
            have = found.get(r.path)
            if have is None:
                found[r.path] = ("complete", node)
                new.append({"node_id": node, "path": r.path, "camera": r.camera, "feed_id": r.feed_id,
                            "start": r.start, "end": r.end, "duration": r.end - r.start, "size": r.size,
                            "state": "complete", "run_id": run_id, "recovered": int(recovered), "added_at": now,
                            "state_at": now, "media_duration": r.media_duration})
            elif have[0] in LIVE_STATES:
                continue
            else:
                conn.execute(update(s).where(s.c.node_id == have[1], s.c.path == r.path).values(
                    state="complete", size=r.size, state_at=now, reason=None))
                found[r.path] = ("complete", have[1])
            _add(deltas.setdefault(found[r.path][1], {}), r.camera, 1, r.size)
            n += 1
        if new:
            conn.execute(_statements(db)["insert"], new)
    for owner, per_camera in deltas.items():
        bump(conn, db, owner, per_camera)
    return n


def _current(conn: Connection, db: CatalogDb, rel_path: str) -> tuple[str, str, int, str] | None:
    """(state, camera, size, node_id) of this node's row of `rel_path`."""
    s = db.t.segments
    row = conn.execute(_locked(db, select(s.c.state, s.c.camera, s.c.size, s.c.node_id).where(
        _mine(db, s.c.node_id), s.c.path == rel_path))).first()
    return None if row is None else (str(row[0]), str(row[1]), int(row[2]), str(row[3]))


def set_state(conn: Connection, db: CatalogDb, rel_path: str, state: str, reason: str | None, now: float) -> bool:
    """Change this node's row of `rel_path`; False when there is none."""
    s = db.t.segments
    old = _current(conn, db, rel_path)
    if old is None:
        return False
    values: dict[str, Any] = {"state": state, "state_at": now}
    if reason is not None:
        values["reason"] = reason
    conn.execute(update(s).where(and_(s.c.node_id == old[3], s.c.path == rel_path)).values(**values))
    was, camera, size = old[0] in LIVE_STATES, old[1], old[2]
    now_live = state in LIVE_STATES
    if was != now_live:
        bump(conn, db, old[3], {camera: (1, size) if now_live else (-1, -size)})
    return True


def set_size(conn: Connection, db: CatalogDb, rel_path: str, size: int) -> None:
    s = db.t.segments
    old = _current(conn, db, rel_path)
    if old is None:
        return
    conn.execute(update(s).where(s.c.node_id == old[3], s.c.path == rel_path).values(size=size))
    if old[0] in LIVE_STATES and size != old[2]:
        bump(conn, db, old[3], {old[1]: (0, size - old[2])})


def delete_all(conn: Connection, db: CatalogDb) -> None:
    """This node's rows and totals (a rebuild from the files follows)."""
    s, t = db.t.segments, db.t.segment_totals
    if db.scoped:
        conn.execute(s.delete().where(s.c.node_id == db.node_id))
        conn.execute(t.delete().where(t.c.node_id == db.node_id))
    else:
        conn.execute(s.delete())
        conn.execute(t.delete())
