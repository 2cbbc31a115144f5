"""fleet/lease_store.py on a real PostgreSQL and a real MariaDB: take, renew, expiry (by the database's clock),
takeover by another node, the fencing counter, release, two processes with one node id, racing takers, heartbeats
and the table prefix."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from cctv_daemon.catalog import migrate
from cctv_daemon.catalog.engine import open_server
from cctv_daemon.fleet.lease_store import LeaseStore, lease_engine
from tests.support.databases import DatabaseServer

TTL = 2.0


@pytest.fixture(params=["postgres", "mariadb"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    server: DatabaseServer = request.getfixturevalue(f"{request.param}_server")
    url = server.create_database(f"lease_{uuid.uuid4().hex[:10]}")
    eng = lease_engine(url)
    yield eng
    eng.dispose()


def migrated(url: URL, prefix: str) -> None:
    """The lease tables come with the catalog's schema (revision 0002)."""
    db = open_server(url, "", prefix)
    try:
        migrate.upgrade(db)
    finally:
        db.close()


def store_of(engine: Engine, prefix: str = "t_") -> LeaseStore:
    migrated(engine.url, prefix)
    return LeaseStore(engine, prefix)


def take(store: LeaseStore, camera: str, instance: str, node: str, shard: int = 0, ttl: float = TTL) -> bool:
    with store.engine.begin() as conn:
        return store.acquire(conn, camera, instance, node, shard, ttl)


def lease(store: LeaseStore, camera: str) -> tuple[str, int, float, float]:
    with store.engine.begin() as conn:
        row = store.read(conn, [camera])[camera]
        return row.instance, row.generation, row.expires_at, store.now(conn)


def test_take_renew_expire_takeover_and_fencing(engine: Engine) -> None:
    store = store_of(engine)
    assert store.leases.name == "t_camera_leases" and store.nodes.name == "t_fleet_nodes"  # catalog.tablePrefix
    assert take(store, "gate", "i-a", "node-a")
    holder, gen, expires, now = lease(store, "gate")
    assert (holder, gen) == ("i-a", 1) and 0 < expires - now <= TTL + 0.5  # the database's clock
    assert not take(store, "gate", "i-b", "node-b")  # held: the other node does not get it
    time.sleep(TTL * 0.6)
    with engine.begin() as conn:
        assert store.renew(conn, "i-a", ["gate", "yard"], TTL) == {"gate"}
    time.sleep(TTL * 0.6)  # past the first expiry, within the renewed one
    assert not take(store, "gate", "i-b", "node-b")
    time.sleep(TTL + 0.3)  # no renewal: expired
    assert take(store, "gate", "i-b", "node-b", shard=1)
    holder, gen, _, _ = lease(store, "gate")
    assert (holder, gen) == ("i-b", 2)  # a new holder: the fencing counter moved on
    with engine.begin() as conn:
        assert store.renew(conn, "i-a", ["gate"], TTL) == set()  # the old holder sees it lost, cannot renew it
        row = store.read(conn)["gate"]
    assert (row.node_id, row.shard) == ("node-b", 1)


def test_release_frees_at_once_and_keeps_the_counter(engine: Engine) -> None:
    store = store_of(engine)
    assert take(store, "gate", "i-a", "node-a", ttl=60)
    with engine.begin() as conn:
        assert store.release(conn, "i-b") == 0  # not its lease
        assert store.release(conn, "i-a", ["gate"]) == 1
    assert take(store, "gate", "i-b", "node-b", ttl=60)  # no TTL to wait for
    assert lease(store, "gate")[:2] == ("i-b", 2)
    with engine.begin() as conn:
        assert store.release(conn, "i-b") == 1
    assert take(store, "gate", "i-b", "node-b", ttl=60)  # its own released lease back
    assert lease(store, "gate")[:2] == ("i-b", 3)


def test_two_processes_with_one_node_id_never_share_a_lease(engine: Engine) -> None:
    store = store_of(engine)
    assert take(store, "gate", "i-1", "cctv-0")
    assert not take(store, "gate", "i-2", "cctv-0")  # same node id, another process: still held
    with engine.begin() as conn:
        assert store.renew(conn, "i-2", ["gate"], TTL) == set()


def test_racing_takers_one_wins(engine: Engine) -> None:
    store = store_of(engine)
    won: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def racer(i: int) -> None:
        start.wait()
        try:
            if take(store, "gate", f"i-{i}", f"node-{i}"):
                won.append(f"i-{i}")
        except BaseException as exc:  # a loser must lose quietly: CI saw MariaDB deadlock the racing INSERTs
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(won) == 1, won
    assert lease(store, "gate")[0] == won[0]


def test_heartbeats_list_live_nodes_by_the_database_clock(engine: Engine) -> None:
    store = store_of(engine)
    with engine.begin() as conn:
        store.heartbeat(conn, "i-a", "cctv-0", 0, 60)
        store.heartbeat(conn, "i-b", "cctv-1", 1, TTL)
        store.heartbeat(conn, "i-b", "cctv-1", 1, TTL)  # again: the same row
        assert [(n.node_id, n.shard) for n in store.live_nodes(conn)] == [("cctv-0", 0), ("cctv-1", 1)]
    time.sleep(TTL + 0.3)
    with engine.begin() as conn:
        assert [n.instance for n in store.live_nodes(conn)] == ["i-a"]
        store.leave(conn, "i-a")
        assert store.live_nodes(conn) == []


def test_migrations_make_the_tables_once_and_prefixes_keep_fleets_apart(engine: Engine) -> None:
    a, b = store_of(engine, "a_"), store_of(engine, "b_")
    store_of(engine, "a_")  # at the newest revision already: nothing to do
    assert take(a, "gate", "i-a", "node-a") and take(b, "gate", "i-b", "node-b")


def test_revision_0002_adopts_lease_tables_made_before_it(engine: Engine) -> None:
    """A database of a fleet before revision 0002: the catalog at 0001, the lease tables made by the nodes
    themselves (as lease_store did), with a lease in them. Migrating keeps them and their rows, and adds
    segment_overlaps; the version is 0002."""
    store = store_of(engine, "old_")
    assert take(store, "gate", "i-a", "node-a", ttl=60)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE old_segment_overlaps"))
        conn.execute(text("UPDATE old_alembic_version SET version_num = '0001'"))
    migrated(engine.url, "old_")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT version_num FROM old_alembic_version")).scalar() == migrate.head() == "0002"
        assert conn.execute(text("SELECT count(*) FROM old_segment_overlaps")).scalar() == 0
        row = store.read(conn, ["gate"])["gate"]
    assert (row.instance, row.node_id, row.generation) == ("i-a", "node-a", 1)  # the lease survived
