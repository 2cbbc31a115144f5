"""Real daemons sharing one real PostgreSQL catalog, recording real RTSP cameras (GStreamer server, one mount per
camera): a daemon started with a duplicate shard records nothing and says which lease stopped it; the holder's
cameras move to the next node within leaseSeconds + 10 s after a SIGKILL; and the fleet test of issue 14: three
daemons (shards 0..2) on nine cameras, each camera recorded by exactly one daemon, `segments` on any node lists all
nine, a killed and restarted daemon resumes its cameras, a fourth daemon with a duplicate shard records nothing,
and a 30 s database outage loses no footage and no catalog row."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from cctv_daemon.fleet import rendezvous
from cctv_daemon.segments.names import parse_file_name
from tests.conftest import DaemonFactory
from tests.support.api import Api
from tests.support.daemon import DaemonProc, wait_for
from tests.support.databases import DatabaseServer, PostgresServer, serve
from tests.support.rtsp import RtspServer

LEASE_S = 3.0
SEGMENT_S = 2


@pytest.fixture
def cameras9(h264_file: Path) -> Iterator[RtspServer]:
    server = RtspServer({f"/cam{i}": ("video", h264_file) for i in range(9)})
    try:
        yield server.start()
    finally:
        server.close()


def fleet_config(server: RtspServer, url: str, shards: int, shard: int, node: str,
                 cams: int = 9) -> dict[str, Any]:
    return {"cameras": [{"cameraName": f"cam{i}", "url": server.url(f"/cam{i}"), "videoDuration": SEGMENT_S}
                        for i in range(cams)],
            "storageConfig": {"savePath": "rec"}, "catalog": {"url": url}, "api": {"enabled": False},
            "fleet": {"shards": shards, "shard": shard, "nodeId": node, "leaseSeconds": LEASE_S}}


def status(d: DaemonProc) -> dict[str, Any]:
    done = d.cli("status", "--json")
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else {}


def recording(d: DaemonProc) -> set[str]:
    """The cameras this daemon has an ffmpeg for (the URL is not in argv: the camera's staging folder is)."""
    return set(ffmpeg_pids(d))


def ffmpeg_pids(d: DaemonProc) -> dict[str, int]:
    """camera -> pid of the live ffmpeg recording it (`-f segment`) for this daemon."""
    if d.proc is None or d.proc.poll() is not None:
        return {}
    marker = str(d.state_dir.resolve() / "staging") + "/"
    out = {}
    for p in d.ffmpegs():
        try:
            argv = p.cmdline()
            records = "segment" in argv or any("f=segment" in a for a in argv)  # `-f segment`, or in a tee (live view)
            if p.status() == psutil.STATUS_ZOMBIE or not records:
                continue  # not a recording ffmpeg (startup recovery remuxes a partial segment with one too)
            for a in argv:  # the staging path may sit inside a tee target: "[f=segment:…]/…/staging/cam/…|[f=hls…]"
                at = a.find(marker)
                parts = a[at + len(marker):].split("/") if at >= 0 else []
                for cam in parts[1:2] if parts[:1] == [".lists"] else parts[:1]:
                    out[cam] = p.pid
        except psutil.Error:
            pass
    return out


def owners(shards: list[int], cams: int = 9) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {s: set() for s in shards}
    for i in range(cams):
        out[rendezvous.owner(f"cam{i}", shards)].add(f"cam{i}")
    return out


class NoDoubleRecording(threading.Thread):
    """Samples every daemon's ffmpegs every 0.2 s; `overlaps` lists (camera, daemons) seen recording at once."""

    def __init__(self, daemons: dict[str, DaemonProc]) -> None:
        super().__init__(daemon=True)
        self.daemons = daemons
        self.overlaps: list[tuple[str, str, dict[str, int]]] = []  # (time, camera, daemon -> ffmpeg pid)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.2):
            seen: dict[str, dict[str, int]] = {}
            for name, d in list(self.daemons.items()):
                for cam, pid in ffmpeg_pids(d).items():
                    seen.setdefault(cam, {})[name] = pid
            now = time.strftime("%H:%M:%S")
            self.overlaps += [(now, cam, pids) for cam, pids in seen.items() if len(pids) > 1]


def test_duplicate_shard_records_nothing_and_names_the_lease(daemon_factory: DaemonFactory,
                                                              postgres_server: DatabaseServer,
                                                              rtsp_server: RtspServer) -> None:
    url = postgres_server.create_database(f"dup_{uuid.uuid4().hex[:8]}")
    cfg = {"cameras": [{"cameraName": f"cam{i}", "url": rtsp_server.auth_url(f"/cam{i}"), "videoDuration": 2}
                       for i in (1, 2)],
           "storageConfig": {"savePath": "rec"}, "catalog": {"url": url},
           "fleet": {"shards": 2, "shard": 0, "nodeId": "node-a", "leaseSeconds": LEASE_S}}
    a = daemon_factory(cfg, name="a")
    wait_for(lambda: recording(a) == {"cam1", "cam2"}, 30, "node-a records both cameras (shard 1 is not live)",
             proc=a.proc)  # node-a alone: it takes shard 1's camera too, after one lease period
    b = daemon_factory({**cfg, "fleet": {**cfg["fleet"], "nodeId": "node-b"}}, name="b")
    st = wait_for(lambda: (s := status(b)) and len(s["cameras"]) == 2
                  and all(c.get("state") == "standby" and c.get("lease") for c in s["cameras"].values()) and s,
                  30, "node-b lists both cameras as standby", proc=b.proc, interval=1)
    for cam in st["cameras"].values():
        assert cam["reason"].startswith("lease held by node node-a (shard 0) until "), cam
        assert cam["lease"]["holder"] == "node-a" and not cam["lease"]["mine"]
    assert st["components"]["fleet"]["held"] == [] and st["components"]["fleet"]["unowned"] == []
    text = b.cli("status").stdout
    assert "cam1: standby: lease held by node node-a (shard 0)" in text
    assert b.events("camera_waits_for_lease"), "the log says why it does not record"
    time.sleep(LEASE_S)  # several lease rounds: still nothing
    assert recording(b) == set() and not b.segments("cam1") and not b.segments("cam2")
    api = Api(b)
    refused = api.post("/api/cameras/cam1/record", json={"minutes": 1})
    assert refused.status_code >= 400 and "lease held by node node-a" in refused.text, refused.text
    view = api.camera("cam1")
    assert view["state"] == "standby" and view["lease"]["holder"] == "node-a"
    assert api.get("/api/health", None).status_code == 200  # standby cameras never fail a probe
    metrics = api.get("/metrics").text
    assert 'cctv_camera_unowned{camera="cam1"} 0.0' in metrics and "cctv_fleet_database_up 1.0" in metrics
    assert 'cctv_camera_state{camera="cam1",state="standby"} 1.0' in metrics
    # the catalog URL's password (where the leases live) shows nowhere
    seen = json.dumps(st) + text + metrics + "".join(p.read_text() for p in (b.state_dir / "logs").glob("*.log*"))
    assert postgres_server.password not in seen


def test_failover_within_lease_plus_10s_after_sigkill(daemon_factory: DaemonFactory,
                                                      postgres_server: DatabaseServer,
                                                      cameras9: RtspServer) -> None:
    url = postgres_server.create_database(f"fo_{uuid.uuid4().hex[:8]}")
    nodes = {s: daemon_factory(fleet_config(cameras9, url, 2, s, f"node-{s}", cams=5), name=f"n{s}") for s in (0, 1)}
    own = owners([0, 1], cams=5)
    assert own == {0: {"cam4"}, 1: {"cam0", "cam1", "cam2", "cam3"}}
    for s, d in nodes.items():
        wait_for(lambda d=d, s=s: recording(d) == own[s], 40, f"node-{s} records its shard's cameras", proc=d.proc)
    nodes[1].kill()
    killed = time.monotonic()
    wait_for(lambda: recording(nodes[0]) == own[0] | own[1], LEASE_S + 10, "node-0 records node-1's cameras too",
             proc=nodes[0].proc)
    took = time.monotonic() - killed
    for cam in sorted(own[1]):
        nodes[0].wait_segments(cam, 1, 15)  # and finishes segments of them
    st = status(nodes[0])
    assert st["components"]["fleet"]["unowned"] == [] and st["components"]["fleet"]["live_nodes"] == [
        {"node_id": "node-0", "shard": 0}]
    print(f"failover: node-0 recording node-1's cameras {took:.1f} s after the SIGKILL (lease {LEASE_S} s)")


def catalogued(d: DaemonProc) -> dict[str, set[str]]:
    """`segments --json` on this node: camera -> file names in the shared catalog."""
    done = d.cli("segments", "--json")
    assert done.returncode == 0, done.stderr
    out: dict[str, set[str]] = {}
    for seg in json.loads(done.stdout)["segments"]:
        out.setdefault(seg["camera"], set()).add(Path(seg["path"]).name)
    return out


def runs_touch(files: list[Path], camera: str, since: float, until: float) -> list[str]:
    """Gaps between consecutive segments of ``camera`` that overlap [since, until] (names are wall-clock)."""
    spans = sorted((p.start, p.end) for f in files if (p := parse_file_name(f.name, camera)) is not None)
    return [f"{e:.1f}..{s2:.1f}" for (_, e), (s2, _) in itertools.pairwise(spans)
            if s2 - e > 0.5 and e < until and s2 > since]


def test_fleet_three_nodes_nine_cameras(daemon_factory: DaemonFactory, cameras9: RtspServer) -> None:
    began = time.monotonic()
    gen = serve(PostgresServer)  # its own server: the outage takes it down (the session's one stays up)
    pg = next(gen)
    try:
        _fleet(daemon_factory, cameras9, pg)
    finally:
        gen.close()
    print(f"fleet test: {time.monotonic() - began:.0f} s")


def _fleet(daemon_factory: DaemonFactory, cameras9: RtspServer, pg: PostgresServer) -> None:
    nodes = {s: daemon_factory(fleet_config(cameras9, pg.url, 3, s, f"node-{s}"), name=f"n{s}") for s in range(3)}
    own = owners([0, 1, 2])
    assert all(own.values()), own
    t0 = time.monotonic()
    watch = NoDoubleRecording({f"node-{s}": d for s, d in nodes.items()})
    watch.start()
    # each camera recorded by exactly one daemon: its shard's
    for s, d in nodes.items():
        wait_for(lambda d=d, s=s: recording(d) == own[s], 60, f"node-{s} records {sorted(own[s])}", proc=d.proc)
        for cam in own[s]:
            d.wait_segments(cam, 1, 30)
    for s, d in nodes.items():
        assert {p.name for p in d.save_path.iterdir() if p.is_dir() and not p.name.startswith(".")} == own[s]
    # `segments` on any node lists all nine (one shared catalog)
    print(f"all recording: {time.monotonic() - t0:.0f} s")
    wait_for(lambda: set(catalogued(nodes[2])) == {f"cam{i}" for i in range(9)}, 30, "all nine in node-2's segments",
             interval=1)

    # a fourth daemon with a duplicate shard records nothing and says which lease stopped it
    dup = daemon_factory(fleet_config(cameras9, pg.url, 3, 1, "node-1-dup"), name="dup")
    st = wait_for(lambda: (s := status(dup)) and len(s.get("cameras", {})) == 9
                  and all(c["state"] == "standby" and c.get("lease") for c in s["cameras"].values()) and s, 30,
                  "the duplicate lists every camera as standby", proc=dup.proc, interval=1)
    for cam in own[1]:
        assert st["cameras"][cam]["reason"].startswith("lease held by node node-1 (shard 1) until "), st["cameras"][cam]
    time.sleep(LEASE_S)
    assert recording(dup) == set() and not any(dup.segments(f"cam{i}") for i in range(9))
    assert dup.stop() == 0

    # node-0 killed: its cameras move to the others; restarted: it resumes them (never two recorders at once)
    nodes[0].kill()
    killed = time.monotonic()
    wait_for(lambda: recording(nodes[1]) | recording(nodes[2]) == {f"cam{i}" for i in range(9)}, LEASE_S + 10,
             "node-1 and node-2 record node-0's cameras")
    print(f"startup + duplicate: {time.monotonic() - t0:.0f} s")
    print(f"failover after SIGKILL: {time.monotonic() - killed:.1f} s (lease {LEASE_S} s)")
    nodes[0].start()
    restarted = time.monotonic()
    for s, d in nodes.items():
        wait_for(lambda d=d, s=s: recording(d) == own[s], 40, f"node-{s} back to its own cameras", proc=d.proc)
    print(f"restarted node-0 has its cameras back after {time.monotonic() - restarted:.1f} s")
    for cam in own[0]:
        n = len(nodes[0].segments(cam))
        nodes[0].wait_segments(cam, n + 1, 30)

    # the database away for 30 s: every node keeps recording; no footage and no catalog row lost
    out_at = time.time()
    outage = pg.outage(30)
    time.sleep(15)
    for s, d in nodes.items():
        assert recording(d) == own[s], f"node-{s} stopped recording during the database outage"
    outage.join()
    back_at = time.time()

    def past_the_outage() -> bool:  # so that a gap at the outage's end would show between two segments
        return all(any(p.end > back_at + 1 for f in d.segments(cam)
                       if (p := parse_file_name(f.name, cam)) is not None)
                   for s, d in nodes.items() for cam in own[s])

    wait_for(past_the_outage, 30, "a segment of every camera ending after the outage", interval=0.5)
    watch.halt.set()
    watch.join(5)
    assert watch.overlaps == [], watch.overlaps[:5]
    for s, d in nodes.items():
        assert recording(d) == own[s]
        for cam in sorted(own[s]):
            files = d.segments(cam)
            assert not runs_touch(files, cam, out_at - 1, back_at + 1), (cam, runs_touch(files, cam, out_at, back_at))
    # every finished segment of every node (also those of a failover) is in the shared catalog (queued locally
    # during the outage, then written)
    deadline = time.monotonic() + 20
    while missing := {f.name for d in nodes.values() for i in range(9) for f in d.segments(f"cam{i}")}.difference(
            *(names for names in catalogued(nodes[0]).values())):
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    for d in nodes.values():
        assert d.stop() == 0
    print(f"outage phase: {time.time() - out_at:.0f} s")
    assert not missing, f"{len(missing)} segments on disk have no catalog row: {sorted(missing)[:5]}"


def test_partition_double_recording_is_kept_and_marked(daemon_factory: DaemonFactory,
                                                       postgres_server: DatabaseServer) -> None:
    """node-a reaches PostgreSQL through a relay that the test cuts: a partition between node-a and the database
    (node-b and the server stay up). node-a goes on recording its camera (footage first) and holds its rows; after
    the lease expired node-b takes the camera and records it too. When the relay heals, node-a sees its lease taken,
    stops, writes its held rows, and the overlap is marked in the catalog: a `segment_overlaps` row, and every
    segment of either node inside it carries the other node (`segments --json` overlapsWith, the API's
    overlaps_with). Nothing is lost (no gap across both nodes), and `check` finds no problem."""
    from cctv_daemon.catalog import overlaps
    from cctv_daemon.catalog.rows import with_gaps
    from cctv_daemon.catalog.store import Catalog
    from tests.support.tcp_cut import TcpCut

    full = postgres_server.create_database(f"part_{uuid.uuid4().hex[:8]}")
    relay = TcpCut(postgres_server.port)
    cam = next(n for n in (f"gate{i}" for i in range(50)) if rendezvous.owner(n, [0, 1]) == 0)

    def cfg(url: str, shard: int, node: str, api: bool) -> dict[str, Any]:
        return {"cameras": [{"cameraName": cam, "source": "test", "videoDuration": 1}],
                "storageConfig": {"savePath": "rec"}, "catalog": {"url": url}, "api": {"enabled": api, "port": 0},
                "fleet": {"shards": 2, "shard": shard, "nodeId": node, "leaseSeconds": LEASE_S}}

    try:
        a = daemon_factory(cfg(full.replace(f":{postgres_server.port}/", f":{relay.port}/"), 0, "node-a", False),
                           name="a")
        a.wait_segments(cam, 2, 40)
        b = daemon_factory(cfg(full, 1, "node-b", True), name="b")
        wait_for(lambda: status(b).get("cameras", {}).get(cam, {}).get("state") == "standby", 30,
                 "node-b standing by", proc=b.proc, interval=1)
        relay.cut()
        cut_at = time.time()
        b.wait_segments(cam, 2, LEASE_S + 30)  # node-b took the expired lease and records
        assert recording(a) == {cam}, "node-a stopped recording while cut off"
        assert a.segments(cam) and a.events("lease_db_unreachable")
        relay.heal()
        healed_at = time.time()
        a.wait_event("double_recording", 30)
        a.wait_event("catalog_database_back", 60)
        # node-b hands the camera back to its preferred node-a once node-a is live: the overlap ended before
        wait_for(lambda: len(a.events("lease_taken")) >= 2, 40, "node-a recording its camera again", proc=a.proc)
        cat = Catalog(Path("/nonexistent/x"), a.save_path, url=full, node_id="reader")
        (ov,) = overlaps.find(cat)
        assert (ov.camera, ov.node_id, ov.other_node) == (cam, "node-a", "node-b")
        assert cut_at < ov.start < ov.end < time.time() and ov.start < healed_at
        listed = json.loads(b.cli("segments", "--json", "--camera", cam).stdout)["segments"]
        inside = [s for s in listed if s["startEpoch"] < ov.end and s["endEpoch"] > ov.start]
        assert {s["node"] for s in inside} == {"node-a", "node-b"}, inside
        for s in listed:
            other = {"node-a": "node-b", "node-b": "node-a"}[s["node"]]
            assert s["overlapsWith"] == (other if s in inside else None), s
        held = [s for s in inside if s["node"] == "node-a"]
        assert held and all(s["path"].split("/")[-1] in {f.name for f in a.segments(cam)} for s in held)
        api = Api(b).get("/api/segments", params={"camera": cam, "from": str(ov.start - 30)}).json()["segments"]
        marked = {(s["node"], s["overlaps_with"]) for s in api if s["start"] < ov.end and s["end"] > ov.start}
        assert marked == {("node-a", "node-b"), ("node-b", "node-a")}, marked
        assert all(s["overlaps_with"] is None for s in api if s["end"] <= ov.start or s["start"] >= ov.end)
        for d in (a, b):
            done = d.cli("check")
            assert done.returncode == 0, done.stdout + done.stderr
        assert a.stop() == 0 and b.stop() == 0
        rows = cat.segments(camera=cam)
        # both copies kept, nothing lost across the two nodes through the partition; once it healed, node-a gives
        # the camera up (its lease is node-b's) while node-b hands it back to node-a (its preferred node, live
        # again): the usual hand-over of a few seconds, never two recorders once the database is reachable
        assert [g for g in with_gaps(rows) if g.start < healed_at] == [], (with_gaps(rows), cut_at, healed_at, ov)
        print(f"partition: overlap of {ov.end - ov.start:.1f} s marked; hand-back gaps: "
              f"{[round(g.seconds, 1) for g in with_gaps(rows)]}")
        on_disk = {f.name for d in (a, b) for f in d.segments(cam)}
        assert {Path(r.path).name for r in rows} == on_disk  # every file of both nodes catalogued
        cat.close()
    finally:
        relay.close()
