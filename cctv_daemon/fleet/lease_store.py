"""Camera leases and node heartbeats in the shared catalog database (SQLAlchemy Core; PostgreSQL, MySQL/MariaDB,
and SQLite for a single node). docs/scale-out.md explains the protocol; fleet/lease_manager.py drives it.

Two tables, named with ``catalog.tablePrefix`` (defined in catalog/schema.py, made by the catalog's migrations):

- ``{prefix}camera_leases``: one row per camera: who records it (``node_id``, ``shard``, and ``instance``, the
  holding *process*: two processes that share a node id never share a lease), ``generation`` (a fencing counter,
  +1 at every change of holder), ``acquired_at`` and ``expires_at``. ``expires_at`` 0 means released.
- ``{prefix}fleet_nodes``: one heartbeat row per running process: its node id, shard and ``expires_at``.

Every time is the **database's** clock (epoch seconds computed by the server in the statement), never a node's: two
nodes whose clocks disagree still agree on whether a lease has expired. A lease is taken by one conditional UPDATE
(or an INSERT for a camera never leased); the database's row lock decides races: two nodes can never both take
one camera. Nothing here blocks on anything but the database, with short connect and statement timeouts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from cctv_daemon.catalog.schema import tables

CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_S = 5
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg", "mysql": "mysql+pymysql",
            "mariadb": "mysql+pymysql", "mariadb+pymysql": "mysql+pymysql"}  # the drivers we ship
RELEASED = 0.0  # expires_at of a released lease: free for anyone at once


@dataclass(frozen=True)
class LeaseRow:
    camera: str
    node_id: str
    instance: str
    shard: int
    generation: int
    acquired_at: float
    expires_at: float

    def live(self, now: float) -> bool:
        return self.expires_at > now

    @property
    def released(self) -> bool:
        return self.expires_at <= RELEASED


@dataclass(frozen=True)
class NodeRow:
    instance: str
    node_id: str
    shard: int
    started_at: float
    expires_at: float


def lease_engine(url: str | URL) -> Engine:
    """An engine of its own for the leases (never the catalog's pool: a slow catalog query must not delay a
    renewal), with short timeouts so that a database that went away is noticed within seconds."""
    url = sa.engine.make_url(url)
    url = url.set(drivername=_DRIVERS.get(url.drivername, url.drivername))
    backend = url.get_backend_name()
    args: dict[str, Any] = {}
    if backend == "postgresql":
        ms = STATEMENT_TIMEOUT_S * 1000
        args = {"connect_timeout": CONNECT_TIMEOUT_S, "options": f"-c statement_timeout={ms} -c lock_timeout={ms}"}
    elif backend == "mysql":
        args = {"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": STATEMENT_TIMEOUT_S,
                "write_timeout": STATEMENT_TIMEOUT_S}
    if backend == "sqlite":
        return sa.create_engine(url, connect_args={"timeout": STATEMENT_TIMEOUT_S})
    # READ COMMITTED: InnoDB's default REPEATABLE READ takes a gap lock for the UPDATE of a camera never leased,
    # and two nodes then inserting into that gap deadlock each other (the catalog's engine does the same)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=1, pool_recycle=600,
                            isolation_level="READ COMMITTED", connect_args=args)


class LeaseStore:
    """The lease and heartbeat statements for one process (``instance``) of node ``node_id`` on ``shard``."""

    def __init__(self, engine: Engine, prefix: str = "") -> None:
        self.engine = engine
        t = tables(prefix)  # made by the catalog's migrations (revision 0002), at start or when the database is back
        self.leases = t.camera_leases
        self.nodes = t.fleet_nodes
        self.overlaps = t.segment_overlaps
        self.dialect = engine.dialect.name

    # -- the database's clock ------------------------------------------------------------------------------
    def now_sql(self) -> sa.ColumnElement[float]:
        """The server's wall clock now, in epoch seconds (sub-second), as a SQL expression."""
        if self.dialect == "postgresql":
            expr = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
        elif self.dialect == "mysql":
            expr = "CAST(UNIX_TIMESTAMP(NOW(6)) AS DOUBLE)"
        else:
            expr = "((julianday('now') - 2440587.5) * 86400.0)"
        return sa.literal_column(expr, sa.Double)

    def now(self, conn: Connection) -> float:
        return float(conn.execute(sa.select(self.now_sql())).scalar_one())

    # -- heartbeats ------------------------------------------------------------------------------------------
    def heartbeat(self, conn: Connection, instance: str, node_id: str, shard: int, ttl: float) -> None:
        n = self.nodes
        done = conn.execute(n.update().where(n.c.instance == instance)
                            .values(expires_at=self.now_sql() + ttl, shard=shard, node_id=node_id))
        if done.rowcount == 0:
            conn.execute(n.insert().values(instance=instance, node_id=node_id, shard=shard,
                                           started_at=self.now_sql(), expires_at=self.now_sql() + ttl))
        # rows of processes gone for an hour: nobody needs them
        conn.execute(n.delete().where(n.c.expires_at < self.now_sql() - 3600))

    def live_nodes(self, conn: Connection) -> list[NodeRow]:
        n = self.nodes
        rows = conn.execute(sa.select(n.c.instance, n.c.node_id, n.c.shard, n.c.started_at, n.c.expires_at)
                            .where(n.c.expires_at > self.now_sql()).order_by(n.c.shard, n.c.node_id))
        return [NodeRow(r.instance, r.node_id, int(r.shard), float(r.started_at), float(r.expires_at)) for r in rows]

    def leave(self, conn: Connection, instance: str) -> None:
        conn.execute(self.nodes.delete().where(self.nodes.c.instance == instance))

    # -- leases ----------------------------------------------------------------------------------------------
    def read(self, conn: Connection, cameras: Iterable[str] | None = None) -> dict[str, LeaseRow]:
        t = self.leases
        query = sa.select(t)
        names = None if cameras is None else list(cameras)
        if names is not None:
            if not names:
                return {}
            query = query.where(t.c.camera.in_(names))
        return {r.camera: LeaseRow(r.camera, r.node_id, r.instance, int(r.shard), int(r.generation),
                                   float(r.acquired_at), float(r.expires_at)) for r in conn.execute(query)}

    def acquire(self, conn: Connection, camera: str, instance: str, node_id: str, shard: int, ttl: float) -> bool:
        """Take ``camera``'s lease if nobody holds it (never leased, released or expired). True when taken: the
        database's row lock makes one of two racing nodes win, the other's UPDATE matches nothing."""
        t = self.leases
        now = self.now_sql()
        free = sa.or_(t.c.instance != instance, t.c.expires_at <= RELEASED)  # our own expired one: renew() keeps it
        done = conn.execute(t.update().where(t.c.camera == camera, t.c.expires_at <= now, free)
                            .values(node_id=node_id, instance=instance, shard=shard, generation=t.c.generation + 1,
                                    acquired_at=now, expires_at=now + ttl))
        if done.rowcount:
            return True
        if conn.execute(sa.select(t.c.camera).where(t.c.camera == camera)).first() is not None:
            return False
        return self._insert_if_absent(conn, dict(camera=camera, node_id=node_id, instance=instance, shard=shard,
                                                 generation=1, acquired_at=now, expires_at=now + ttl))

    def _insert_if_absent(self, conn: Connection, values: dict[str, Any]) -> bool:
        """INSERT the lease row unless another node inserted it first (True: ours). One statement that yields to
        the existing row on every backend, never a savepoint: on MariaDB a lost race could end as a deadlock that
        rolls the whole transaction back, savepoint included, and ``ROLLBACK TO SAVEPOINT`` then failed."""
        t = self.leases
        name = conn.dialect.name
        if name == "mysql":  # MariaDB too
            return bool(conn.execute(t.insert().values(**values).prefix_with("IGNORE")).rowcount == 1)
        from sqlalchemy.dialects import postgresql, sqlite  # the other two backends lease_engine() makes

        insert = postgresql.insert if name == "postgresql" else sqlite.insert
        stmt = insert(t).values(**values).on_conflict_do_nothing(index_elements=[t.c.camera])
        return conn.execute(stmt.returning(t.c.camera)).first() is not None  # psycopg's rowcount here is -1

    def renew(self, conn: Connection, instance: str, cameras: Iterable[str], ttl: float) -> set[str]:
        """Extend every lease this process still holds among ``cameras`` (one statement; also one that expired
        while nobody else took it: footage first). Returns the cameras renewed."""
        names = list(cameras)
        if not names:
            return set()
        t = self.leases
        conn.execute(t.update().where(t.c.instance == instance, t.c.camera.in_(names), t.c.expires_at > RELEASED)
                     .values(expires_at=self.now_sql() + ttl))
        return {r.camera for r in conn.execute(sa.select(t.c.camera).where(t.c.instance == instance,
                                                                            t.c.camera.in_(names)))}

    def adopt(self, conn: Connection, old: str, new: str, ttl: float) -> int:
        """This node's previous process is gone (the caller knows: it holds the recording folder's instance lock
        and that process wrote ``old``): its leases are ours at once, with a new generation, instead of after
        their expiry. Leases another process took meanwhile are not touched."""
        t = self.leases
        done = conn.execute(t.update().where(t.c.instance == old, t.c.expires_at > RELEASED)
                            .values(instance=new, generation=t.c.generation + 1, expires_at=self.now_sql() + ttl))
        conn.execute(self.nodes.delete().where(self.nodes.c.instance == old))
        return int(done.rowcount)

    def release(self, conn: Connection, instance: str, cameras: Iterable[str] | None = None) -> int:
        """Give leases up at once (expires_at = 0: the next node need not wait for the TTL). All of this process's
        leases when ``cameras`` is None."""
        t = self.leases
        cond = [t.c.instance == instance, t.c.expires_at > RELEASED]
        if cameras is not None:
            names = list(cameras)
            if not names:
                return 0
            cond.append(t.c.camera.in_(names))
        return int(conn.execute(t.update().where(*cond).values(expires_at=RELEASED)).rowcount)


    # -- a double recording after a partition (catalog/overlaps.py reads them) -------------------------------
    def note_overlap(self, conn: Connection, camera: str, node_id: str, other_node: str, start: float) -> int:
        """``node_id`` (this node, cut off from the database) went on recording ``camera`` while ``other_node``
        took its lease at ``start``: both recorded it from then until now (the database's clock). Returns the row's
        id, for :meth:`end_overlap` once this node's ffmpeg has stopped."""
        o = self.overlaps
        done = conn.execute(o.insert().values(camera=camera, node_id=node_id, other_node=other_node, start=start,
                                              end=self.now_sql(), noted_at=self.now_sql()))
        key = done.inserted_primary_key
        return int(key[0]) if key and key[0] is not None else 0

    def end_overlap(self, conn: Connection, overlap_id: int) -> None:
        """This node's recording of the camera has stopped now: the overlap ends here."""
        o = self.overlaps
        conn.execute(o.update().where(o.c.id == overlap_id).values(end=self.now_sql()))


def describe(row: LeaseRow | None, now: float) -> str:
    """"node cctv-1 (shard 1) until 12:00:03Z" for status and logs."""
    if row is None or row.released:
        return "nobody"
    import time

    until = time.strftime("%H:%M:%SZ", time.gmtime(row.expires_at))
    state = "until" if row.live(now) else "expired at"
    return f"node {row.node_id} (shard {row.shard}) {state} {until}"

