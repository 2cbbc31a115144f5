"""fleet/lease_manager.py on a real PostgreSQL, rounds driven by the test (no thread): each node takes its shard's
cameras, a node that dies loses them to the next node in each camera's rendezvous order after the TTL, the
preferred node gets them back once the interim holder's cameras stopped (never both), a duplicate shard holds
nothing and names the holder, and a node cut off from the database keeps what it holds."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cctv_daemon.catalog import migrate, overlaps
from cctv_daemon.catalog.engine import open_server, parse_url
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.fleet import rendezvous
from cctv_daemon.fleet.identity import FleetIdentity
from cctv_daemon.fleet.lease_manager import HELD, RELEASING, STANDBY, LeaseManager
from cctv_daemon.fleet.lease_store import LeaseStore, lease_engine
from tests.support.databases import DatabaseServer
from tests.support.rtsp import free_port

TTL = 3.0
CAMERAS = tuple(f"cam{i}" for i in range(8))


@pytest.fixture
def url(postgres_server: DatabaseServer) -> str:
    made = postgres_server.create_database(f"mgr_{uuid.uuid4().hex[:10]}")
    db = open_server(parse_url(made), "", "f_")  # the lease tables come with the catalog's schema
    migrate.upgrade(db)
    db.close()
    return made


@pytest.fixture
def made() -> Iterator[list[Engine]]:
    engines: list[Engine] = []
    yield engines
    for eng in engines:
        eng.dispose()


def node(url: str, made: list[Engine], shard: int, node_id: str | None = None, shards: int = 2) -> LeaseManager:
    eng = lease_engine(url)
    made.append(eng)
    mgr = LeaseManager(LeaseStore(eng, "f_"), FleetIdentity(shards, shard, node_id or f"cctv-{shard}"), TTL)
    mgr.offer(CAMERAS, frozenset())
    return mgr


def held(mgr: LeaseManager) -> set[str]:
    return {cam for cam, lease in mgr.view.cameras.items() if lease.mine}


def own(shard: int, shards: list[int]) -> set[str]:
    return {cam for cam in CAMERAS if rendezvous.owner(cam, shards) == shard}


def rounds(*mgrs: LeaseManager, n: int = 2) -> None:
    for _ in range(n):
        for mgr in mgrs:
            mgr.round()


def test_shards_failover_and_hand_back(url: str, made: list[Engine]) -> None:
    a, b = node(url, made, 0), node(url, made, 1)
    rounds(a, b)
    assert held(a) == own(0, [0, 1]) and held(b) == own(1, [0, 1])
    assert own(0, [0, 1]) and own(1, [0, 1])  # both shards have cameras
    assert not (held(a) & held(b))
    lease = b.view.cameras[next(iter(own(0, [0, 1])))]
    assert lease.state == STANDBY and lease.holder == "cctv-0"
    assert "lease held by node cctv-0 (shard 0)" in lease.reason
    assert b.view.live_nodes == (("cctv-0", 0), ("cctv-1", 1))

    # b dies (no more rounds, no release): after the TTL, a takes b's cameras too (a has been connected > TTL)
    t0 = time.monotonic()
    while held(a) != set(CAMERAS):
        assert time.monotonic() - t0 < TTL + 3 * TTL / 5 + 2, a.view.status()
        a.round()
        time.sleep(0.2)
    assert time.monotonic() - t0 >= TTL - 1  # not before b's leases expired

    # b comes back (a new process): it waits, a hands back once its cameras stopped, then b takes them
    b2 = node(url, made, 1)
    b2.round()
    assert held(b2) == set()
    a.offer(CAMERAS, frozenset(CAMERAS))  # all of a's cameras are still recording
    a.round()
    back = own(1, [0, 1])
    assert {cam for cam, lease in a.view.cameras.items() if lease.state == RELEASING} == back
    assert not any(a.view.cameras[cam].mine for cam in back)  # the loop stops them...
    b2.round()
    assert held(b2) == set()  # ...and a still holds them until they have stopped: never two recorders
    a.offer(CAMERAS, frozenset(CAMERAS) - back)
    a.round()
    b2.round()
    assert held(b2) == back and held(a) == own(0, [0, 1])
    assert {b2.view.cameras[cam].generation for cam in back} == {3}  # b, a, b: the fencing counter counts holders


def test_duplicate_shard_holds_nothing_and_names_the_holder(url: str, made: list[Engine]) -> None:
    a = node(url, made, 0, shards=1)
    a.round()
    assert held(a) == set(CAMERAS)
    dup = node(url, made, 0, node_id="cctv-0-copy", shards=1)
    rounds(dup, a, dup)
    assert held(dup) == set() and held(a) == set(CAMERAS)
    for lease in dup.view.cameras.values():
        assert lease.state == STANDBY and lease.holder == "cctv-0"
        assert lease.reason.startswith("lease held by node cctv-0 (shard 0) until ")
    same_id = node(url, made, 0, node_id="cctv-0", shards=1)  # even with the same node id
    rounds(same_id)
    assert held(same_id) == set() and same_id.view.duplicate_node_id


def test_cut_off_node_keeps_its_leases_and_takes_none(url: str, made: list[Engine]) -> None:
    a = node(url, made, 0, shards=1)
    a.round()
    assert held(a) == set(CAMERAS)
    good = a.store.engine
    dead = lease_engine(f"postgresql+psycopg://x:y@127.0.0.1:{free_port()}/none")  # refused: the database is away
    made.append(dead)
    a.store.engine = dead
    a.round()
    assert not a.view.db_ok and a.view.error and held(a) == set(CAMERAS)  # footage first: still recording
    assert all(lease.state == HELD for lease in a.view.cameras.values())
    a.store.engine = good
    a.round()
    assert a.view.db_ok and held(a) == set(CAMERAS)  # nobody took them: renewed


def test_restarted_process_adopts_its_folders_leases_at_once(url: str, made: list[Engine], tmp_path: Path) -> None:
    """The previous process of this recording folder (named in {stateDir}/fleet-instance; the instance lock says it
    is gone) held the leases: the new one takes them over at once instead of after the TTL."""
    a = node(url, made, 0, shards=1)
    a.round()
    assert held(a) == set(CAMERAS)
    marker = tmp_path / "fleet-instance"
    marker.write_text(a.instance + "\n")  # what a.start() writes
    eng = lease_engine(url)
    made.append(eng)
    b = LeaseManager(LeaseStore(eng, "f_"), FleetIdentity(1, 0, "cctv-0"), TTL, instance_file=marker)
    b.offer(CAMERAS, frozenset())
    b.round()
    assert held(b) == set(CAMERAS), b.view.status()
    assert {lease.generation for lease in b.view.cameras.values()} == {2}  # a new holder: the counter moved on
    assert b.view.live_nodes == (("cctv-0", 0),) and not b.view.duplicate_node_id  # a's heartbeat is gone


def test_double_recording_after_a_partition_is_marked_in_the_catalog(url: str, made: list[Engine],
                                                                    tmp_path: Path) -> None:
    """a (shard 0) records every camera and is cut off from the database; after the TTL b (shard 1) takes the
    leases and records too. When a is back it gives them up, and the overlap (b's take-over until a's ffmpeg
    stopped) is a row of segment_overlaps: the segments of both nodes inside carry the mark, those before do not."""
    a, b = node(url, made, 0), node(url, made, 1)
    a.round()
    mine = own(0, [0, 1])
    everything = frozenset(CAMERAS)
    a.offer(CAMERAS, everything)
    rounds(a, b, n=2)
    assert held(a) == mine and held(b) == own(1, [0, 1])
    a.offer(CAMERAS, frozenset(mine))  # a records its shard's cameras
    good = a.store.engine
    dead = lease_engine(f"postgresql+psycopg://x:y@127.0.0.1:{free_port()}/none")
    made.append(dead)
    a.store.engine = dead  # cut off: a goes on recording what it holds
    a.round()
    assert held(a) == mine and not a.view.db_ok
    t0 = time.monotonic()
    while held(b) != everything:  # b takes a's cameras once their leases expired
        assert time.monotonic() - t0 < TTL * 3 + 3, b.view.status()
        b.round()
        time.sleep(0.2)
    taken = {cam: b.view.cameras[cam].acquired_at for cam in mine}
    a.store.engine = good
    a.round()  # back: the leases are b's; a stops these cameras (still running this round)
    assert held(a) == set() and a.view.db_ok
    # the overlaps are open while a's ffmpegs still run ...
    cat = Catalog(tmp_path / "x", tmp_path, url=url, node_id="cctv-1", prefix="f_")
    found = overlaps.find(cat)
    assert {(o.camera, o.node_id, o.other_node) for o in found} == {(cam, "cctv-0", "cctv-1") for cam in mine}
    assert all(o.start == taken[o.camera] and o.end >= o.start for o in found)
    time.sleep(0.5)
    a.offer(CAMERAS, frozenset())  # ... and end when they have stopped
    a.round()
    ended = {o.camera: o for o in overlaps.find(cat)}
    assert all(ended[cam].end >= found[0].end + 0.4 for cam in mine), ended
    a.round()
    assert len(overlaps.find(cat)) == len(mine)  # noted once
    cam = sorted(mine)[0]
    ov = ended[cam]
    assert overlaps.other_node(cam, "cctv-0", ov.start + 0.1, ov.start + 0.2, ended.values()) == "cctv-1"
    assert overlaps.other_node(cam, "cctv-1", ov.start + 0.1, ov.start + 0.2, ended.values()) == "cctv-0"
    assert overlaps.other_node(cam, "cctv-0", ov.start - 10, ov.start - 1, ended.values()) is None  # before
    cat.close()


def test_single_node_records_before_the_database_answers_then_takes_its_leases(url: str, made: list[Engine],
                                                                               tmp_path: Path) -> None:
    """A single node (presume: fleet.shards 1) started while the catalog database is down records every camera
    as if it held it. When the database answers it takes the free leases at once (no lease period to wait), and
    gives up a camera another live process holds, marking the overlap from its own start."""
    other = node(url, made, 0, node_id="elsewhere", shards=1)
    other.offer(CAMERAS[:1], frozenset())
    other.round()
    assert held(other) == {CAMERAS[0]}
    down: list[str | None] = ["connection refused"]
    eng = lease_engine(url)
    made.append(eng)
    a = LeaseManager(LeaseStore(eng, "f_"), FleetIdentity(1, 0, "cctv-0"), TTL, schema_wait=lambda: down[0],
                     presume=True)
    assert a.mine("cam5")  # before any round: a single node records at once
    a.offer(CAMERAS, frozenset(CAMERAS))
    a.round()
    assert held(a) == set(CAMERAS) and not a.view.db_ok
    assert a.view.error == "waiting for the catalog database: connection refused"
    sharded = LeaseManager(LeaseStore(eng, "f_"), FleetIdentity(2, 0, "cctv-9"), TTL, schema_wait=lambda: down[0])
    sharded.offer(CAMERAS, frozenset())
    sharded.round()
    assert not sharded.mine("cam5") and held(sharded) == set()  # a node of a sharded fleet waits
    down[0] = None
    a.round()
    assert held(a) == set(CAMERAS[1:]) and a.view.db_ok  # taken at once, the held one given up
    assert a.view.cameras[CAMERAS[0]].holder == "elsewhere"
    cat = Catalog(tmp_path / "x", tmp_path, url=url, node_id="reader", prefix="f_")
    (ov,) = overlaps.find(cat)
    assert (ov.camera, ov.node_id, ov.other_node) == (CAMERAS[0], "cctv-0", "elsewhere")
    assert ov.start >= a.started_at  # the other node held it before we started: the overlap begins at our start
    cat.close()
