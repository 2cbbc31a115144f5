"""The fleet's tables in the versioned schema (additive: an older node keeps running beside it):

- `camera_leases` and `fleet_nodes` (fleet/lease_store.py). Nodes before this revision made them themselves "if
  missing", outside the migrations: on such a database they exist already and are kept as they are (same columns),
  with their rows; elsewhere they are made here.
- `segment_overlaps`: the intervals in which two nodes recorded one camera after a partition (catalog/overlaps.py).

Made on every backend (a SQLite catalog is single-node and leaves them empty), named with `catalog.tablePrefix`.

NOTE: frozen like 0001: a later change to these Tables comes with its own revision."""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import inspect

from cctv_daemon.catalog.schema import tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    t = tables(context.config.attributes["prefix"])
    have = set(inspect(conn).get_table_names())
    for table in (t.camera_leases, t.fleet_nodes, t.segment_overlaps):
        if table.name not in have:  # made by lease_store before this revision: kept
            table.create(conn)


def downgrade() -> None:
    raise RuntimeError("the catalog is never downgraded")
