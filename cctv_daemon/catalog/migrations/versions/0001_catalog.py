"""The catalog's first versioned schema: segments, segment_totals, uploads, recordings (catalog/schema.py).

A SQLite catalog made before the migrations (`catalog_schema` version 1, tables without `id`/`node_id`, totals
kept by triggers) is adopted in place: its rows, their ids (the rowid), upload states and recordings are kept, the
triggers are replaced by the catalog's own bookkeeping and `segment_totals` is recounted per node. Its
`catalog_schema` says 2 afterwards, so an older cctv-daemon refuses the file instead of misreading it.

NOTE: this script creates the tables from catalog/schema.py as they are at this revision (Tables.first_revision:
later tables come with their own revision); a later change to one of these four Tables there must come with its own
migration (additive: add_column / create_index) and this one frozen to the old definition first."""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import Connection, func, insert, inspect, select

from cctv_daemon.catalog.schema import Tables, tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LIVE = ("complete", "deleting")
_LEGACY_TRIGGERS = ("segments_ins", "segments_del", "segments_upd_old", "segments_upd_new")
_LEGACY_INDEXES = ("segments_camera_start", "segments_state_start", "segments_duration", "uploads_state_start",
                   "recordings_camera_start", "recordings_label")
_SEGMENT_COLS = ("path", "camera", "feed_id", "start", "end", "duration", "size", "state", "run_id", "recovered",
                 "added_at", "state_at", "reason", "media_duration")
_UPLOAD_COLS = ("path", "camera", "start", "size", "s3_key", "state", "attempts", "next_attempt_at", "last_error",
                "etag", "sha256", "queued_at", "uploaded_at", "failures", "check_remote")
_RECORDING_COLS = ("id", "camera", "label", "start", "end", "keep", "requested_by")


def _q(name: str) -> str:
    return '"' + name + '"'


def _copy(conn: Connection, legacy: str, new: str, cols: tuple[str, ...], node: str, rowid: bool) -> None:
    have = {c["name"] for c in inspect(conn).get_columns(legacy)}
    # a column the legacy table lacks (added later in place: failures, check_remote, media_duration)
    src = [_q(c) if c in have else ("0" if c in ("failures", "check_remote", "recovered") else "NULL")
           for c in cols]
    dst = [_q(c) for c in cols]
    if rowid:
        src, dst = ["rowid", *src], ["id", *dst]
    conn.exec_driver_sql(f"INSERT INTO {_q(new)} (node_id, {', '.join(dst)}) "
                         f"SELECT ?, {', '.join(src)} FROM {_q(legacy)}", (node,))


def _adopt_sqlite(conn: Connection, t: Tables, node: str) -> None:
    names = set(inspect(conn).get_table_names())
    for trig in _LEGACY_TRIGGERS:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trig}")
    for idx in _LEGACY_INDEXES:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {idx}")
    moved = {}
    for name in ("segments", "segment_totals", "uploads", "recordings"):
        if name in names:
            conn.exec_driver_sql(f"ALTER TABLE {name} RENAME TO legacy_{name}")
            moved[name] = f"legacy_{name}"
    t.metadata.create_all(conn, tables=t.first_revision)
    if "segments" in moved:
        _copy(conn, moved["segments"], t.segments.name, _SEGMENT_COLS, node, rowid=True)
    if "uploads" in moved:
        _copy(conn, moved["uploads"], t.uploads.name, _UPLOAD_COLS, node, rowid=False)
    if "recordings" in moved:
        _copy(conn, moved["recordings"], t.recordings.name, _RECORDING_COLS, node, rowid=False)
    for legacy in moved.values():
        conn.exec_driver_sql(f"DROP TABLE {legacy}")


def upgrade() -> None:
    conn = op.get_bind()
    attrs = context.config.attributes
    t = tables(attrs["prefix"])
    node = attrs["node_id"]
    sqlite = conn.dialect.name == "sqlite"
    names = set(inspect(conn).get_table_names())
    legacy = (sqlite and t.prefix == "" and "segments" in names
              and "id" not in {c["name"] for c in inspect(conn).get_columns("segments")})
    if legacy:
        _adopt_sqlite(conn, t, node)
    else:
        t.metadata.create_all(conn, tables=t.first_revision)
    s, tot = t.segments, t.segment_totals
    conn.execute(tot.delete())
    counted = (select(s.c.node_id, s.c.camera, func.count(), func.sum(s.c.size))
               .where(s.c.state.in_(LIVE)).group_by(s.c.node_id, s.c.camera))
    conn.execute(insert(tot).from_select(["node_id", "camera", "count", "bytes"], counted))
    if sqlite:
        # main's code before the migrations read this table: 2 makes an older program refuse the file
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS catalog_schema (version INTEGER NOT NULL)")
        conn.exec_driver_sql("DELETE FROM catalog_schema")
        conn.exec_driver_sql("INSERT INTO catalog_schema (version) VALUES (2)")


def downgrade() -> None:
    raise RuntimeError("the catalog is never downgraded")
