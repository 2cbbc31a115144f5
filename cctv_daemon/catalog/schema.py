"""The catalog's tables, defined once for every backend (SQLite, PostgreSQL, MySQL/MariaDB) as SQLAlchemy Core
`Table` objects, named with `catalog.tablePrefix`. Created and changed only by the migrations
(catalog/migrations); code reads and writes through these objects (never hand-written SQL: `end` is a reserved
word, quoted differently by each backend).

Portability rules kept here: epoch seconds are 8-byte floats (`Double`: MySQL's FLOAT is 4 bytes), keys are
`String(n)` (MySQL cannot index TEXT), every row carries `node_id` (the fleet node that holds its file), and
`segments.id` is an integer that is never 0 (MySQL reads an explicit 0 as "make one up")."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NODE_LEN = 64  # fleet.nodeId: 1-63 characters
PATH_LEN = 512  # relative segment path; (node_id, path) stays within MySQL's 3072-byte key limit in utf8mb4
NAME_LEN = 64  # camera / feed names (config: at most 64)
KEY_LEN = 1024  # S3 keys
STATE_LEN = 16

# Keys are (path, node_id), path first: a SQLite catalog (single-node) looks rows up by path alone.
# SQLite: `INTEGER PRIMARY KEY` is the rowid (the ids of catalogs made before the migrations stay as they were).
IdType = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class Tables:
    metadata: MetaData
    prefix: str
    segments: Table
    segment_totals: Table
    uploads: Table
    recordings: Table
    camera_leases: Table  # revision 0002: the fleet's leases (fleet/lease_store.py)
    fleet_nodes: Table
    segment_overlaps: Table  # revision 0002: intervals two nodes recorded one camera (catalog/overlaps.py)

    @property
    def first_revision(self) -> list[Table]:
        """The tables of revision 0001 (its migration creates exactly these)."""
        return [self.segments, self.segment_totals, self.uploads, self.recordings]

    @property
    def version_table(self) -> str:
        return f"{self.prefix}alembic_version"


def _segments(md: MetaData, p: str) -> Table:
    return Table(
        f"{p}segments", md,
        Column("id", IdType, primary_key=True, autoincrement=True),
        Column("node_id", String(NODE_LEN), nullable=False, server_default=""),
        Column("path", String(PATH_LEN), nullable=False),  # relative to savePath, POSIX
        Column("camera", String(NAME_LEN), nullable=False),
        Column("feed_id", String(NAME_LEN), nullable=False),
        Column("start", Double(), nullable=False),  # UTC epoch seconds
        Column("end", Double(), nullable=False),
        Column("duration", Double(), nullable=False),
        Column("size", BigInteger(), nullable=False),
        Column("state", String(STATE_LEN), nullable=False),  # complete / deleting / deleted / missing
        Column("run_id", String(NAME_LEN)),
        Column("recovered", Integer(), nullable=False, server_default="0"),
        Column("added_at", Double(), nullable=False),
        Column("state_at", Double(), nullable=False),  # when the state last changed
        Column("reason", Text()),  # why deleted / missing
        Column("media_duration", Double()),  # seconds of media by the camera's clock (None: unknown)
        UniqueConstraint("path", "node_id", name=f"{p}segments_path_node"),
        Index(f"{p}segments_camera_start", "camera", "start"),
        Index(f"{p}segments_state_start", "state", "start"),
        Index(f"{p}segments_duration", "duration"),
    )


def _totals(md: MetaData, p: str) -> Table:
    """Live (complete/deleting) segments per node and camera, kept exact by the catalog in the transaction that
    changes a segment (catalog/writes.py)."""
    return Table(
        f"{p}segment_totals", md,
        Column("node_id", String(NODE_LEN), nullable=False, server_default=""),
        Column("camera", String(NAME_LEN), nullable=False),
        Column("count", BigInteger(), nullable=False),
        Column("bytes", BigInteger(), nullable=False),
        PrimaryKeyConstraint("node_id", "camera", name=f"{p}segment_totals_pk"),
    )


def _uploads(md: MetaData, p: str) -> Table:
    return Table(
        f"{p}uploads", md,
        Column("node_id", String(NODE_LEN), nullable=False, server_default=""),
        Column("path", String(PATH_LEN), nullable=False),
        Column("camera", String(NAME_LEN), nullable=False),
        Column("start", Double(), nullable=False),
        Column("size", BigInteger(), nullable=False),
        Column("s3_key", String(KEY_LEN), nullable=False),
        Column("state", String(STATE_LEN), nullable=False),
        Column("attempts", Integer(), nullable=False, server_default="0"),
        Column("next_attempt_at", Double(), nullable=False, server_default="0"),
        Column("last_error", Text()),
        Column("etag", String(128)),
        Column("sha256", String(64)),
        Column("queued_at", Double(), nullable=False),
        Column("uploaded_at", Double()),
        Column("failures", Integer(), nullable=False, server_default="0"),
        Column("check_remote", Integer(), nullable=False, server_default="0"),
        PrimaryKeyConstraint("path", "node_id", name=f"{p}uploads_pk"),
        Index(f"{p}uploads_state_start", "state", "start"),
    )


def _recordings(md: MetaData, p: str) -> Table:
    return Table(
        f"{p}recordings", md,
        Column("id", IdType, primary_key=True, autoincrement=True),
        Column("node_id", String(NODE_LEN), nullable=False, server_default=""),
        Column("camera", String(NAME_LEN), nullable=False),
        Column("label", String(255)),
        Column("start", Double(), nullable=False),
        Column("end", Double(), nullable=False),
        Column("keep", Integer(), nullable=False, server_default="0"),
        Column("requested_by", String(255)),
        Index(f"{p}recordings_camera_start", "camera", "start"),
        Index(f"{p}recordings_label", "label"),
    )


def _leases(md: MetaData, p: str) -> Table:
    """One row per camera: who records it (docs/scale-out.md "Leases"). expires_at 0: released."""
    return Table(
        f"{p}camera_leases", md,
        Column("camera", String(NAME_LEN), primary_key=True),
        Column("node_id", String(NODE_LEN), nullable=False),
        Column("instance", String(40), nullable=False),  # the holding process
        Column("shard", Integer(), nullable=False),
        Column("generation", BigInteger(), nullable=False),  # fencing counter: +1 at each change of holder
        Column("acquired_at", Double(), nullable=False),  # the database's clock, epoch seconds
        Column("expires_at", Double(), nullable=False),
    )


def _nodes(md: MetaData, p: str) -> Table:
    """One heartbeat row per running process of the fleet."""
    return Table(
        f"{p}fleet_nodes", md,
        Column("instance", String(40), primary_key=True),
        Column("node_id", String(NODE_LEN), nullable=False),
        Column("shard", Integer(), nullable=False),
        Column("started_at", Double(), nullable=False),
        Column("expires_at", Double(), nullable=False),
    )


def _overlaps(md: MetaData, p: str) -> Table:
    """A brief double recording after a partition (docs/scale-out.md): from `start` to `end` (the database's
    clock), both `node_id` (cut off from the database, it went on recording) and `other_node` (it took the lease
    meanwhile) recorded `camera`. Both copies are kept; the segments of either node inside carry the mark."""
    return Table(
        f"{p}segment_overlaps", md,
        Column("id", IdType, primary_key=True, autoincrement=True),
        Column("camera", String(NAME_LEN), nullable=False),
        Column("node_id", String(NODE_LEN), nullable=False),
        Column("other_node", String(NODE_LEN), nullable=False),
        Column("start", Double(), nullable=False),
        Column("end", Double(), nullable=False),
        Column("noted_at", Double(), nullable=False),
        Index(f"{p}segment_overlaps_camera_start", "camera", "start"),
    )


@lru_cache(maxsize=8)
def tables(prefix: str = "") -> Tables:
    md = MetaData()
    return Tables(md, prefix, _segments(md, prefix), _totals(md, prefix), _uploads(md, prefix),
                  _recordings(md, prefix), _leases(md, prefix), _nodes(md, prefix), _overlaps(md, prefix))
