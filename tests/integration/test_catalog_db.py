"""The daemon with its catalog on PostgreSQL and MariaDB (catalog.url; real servers from tests/support/databases.py,
a fresh database per test): recording, listing with gaps, upload to S3 (moto), check/repair, export, retention,
crash recovery after SIGKILL; the URL's password (${ENV}) never shown."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from cctv_daemon.api import ids
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core import constants as c
from tests.conftest import DaemonFactory
from tests.support.api import Api
from tests.support.daemon import wait_for
from tests.support.databases import DatabaseServer
from tests.support.s3 import MotoServer

PW_ENV = "CCTV_TEST_DB_PASSWORD"
BUCKET = "cctv-db"


def db_url(server: DatabaseServer) -> tuple[str, str]:
    """(catalog.url with ${PW_ENV} for the password, the fresh database's plain SQLAlchemy URL)."""
    name = f"d_{uuid.uuid4().hex[:16]}"
    full = server.create_database(name)
    scheme = "postgresql" if server.kind == "postgresql" else "mariadb"
    return f"{scheme}://{server.user}:${{{PW_ENV}}}@127.0.0.1:{server.port}/{name}", full


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> DatabaseServer:
    name = "postgres_server" if request.param == "postgresql" else "mariadb_server"
    found: DatabaseServer = request.getfixturevalue(name)
    return found


def config(url: str, cameras: list[str], **storage: Any) -> dict[str, Any]:
    return {"cameras": [{"cameraName": n, "source": "test", "videoDuration": 1} for n in cameras],
            "storageConfig": storage, "logging": {"level": "info"}, "catalog": {"url": url}}


def open_catalog(full_url: str, save: Path) -> Catalog:
    return Catalog(save / ".cctv" / c.CATALOG_FILENAME, save, url=full_url, node_id="reader")


def our_files(save: Path) -> dict[str, int]:
    return {p.relative_to(save).as_posix(): p.stat().st_size for p in save.glob("*/*/*.mp4")}


def test_records_lists_uploads_checks_and_exports(server: DatabaseServer, moto_server: MotoServer,
                                                  daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    url, full = db_url(server)
    env = {PW_ENV: server.password, "CCTV_UPLOAD_BACKOFF_S": "0.3,1.5"}
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    cfg = config(url, ["t1"])
    cfg["s3Config"] = {"s3Bucket": BUCKET, "endpointUrl": moto_server.endpoint, "addressingStyle": "path"}
    cfg["awsCredentials"] = {"accessKeyId": "k", "secretAccessKey": "s3cr3t-key", "region": "us-east-1"}
    d = daemon_factory(cfg, env)
    save = d.save_path
    cat = open_catalog(full, save)

    def uploaded() -> int:
        return sum(1 for r in cat.segments() if r.upload_state == "uploaded")

    wait_for(lambda: uploaded() >= 4, 90, "4 segments catalogued and uploaded", proc=d.proc)
    status = d.cli("status", env=env)
    # The API reads the shared catalog (not a local SQLite file): it lists what the database holds, and a row
    # of another node whose file is not uploaded is not played from here but named with its node.
    api = Api(d)
    listed_api = api.get("/api/segments", params={"camera": "t1"}).json()["segments"]
    assert len(listed_api) >= uploaded() >= 4
    ours = cat.segments()[0]
    elsewhere = f"t1/elsewhere/{PurePosixPath(ours.path).name}"
    cat.add_rows([ours._replace(path=elsewhere, start=ours.start + 0.25, end=ours.end + 0.25, upload_state=None)])
    (theirs,) = [r for r in cat.segments(camera="t1") if r.path == elsewhere]
    assert theirs.node_id == "reader"
    assert ids.segment_id(theirs) in {s["id"] for s in api.get("/api/segments", params={"camera": "t1"}).json()[
        "segments"]}
    video = api.get(f"/api/segments/{ids.segment_id(theirs)}/video")
    assert video.status_code == 409 and "reader" in video.json()["detail"], video.text
    exported = api.get("/api/export", params={"camera": "t1", "from": iso(ours.start), "to": iso(ours.end)})
    assert exported.status_code != 200 and "reader" in exported.text, exported.text
    cat.set_state(elsewhere, "deleted", "test row of another node")
    assert d.stop(30) == 0
    rows = cat.segments()
    assert {r.path for r in rows} == set(our_files(save)) and all(r.node_id for r in rows)
    assert len({r.node_id for r in rows}) == 1  # the daemon's node id on every row
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert len(keys) == uploaded() >= 4
    assert cat.totals() == {}  # "reader" is another node: its own totals are empty
    seg = d.cli("segments", "--json", env=env)
    assert seg.returncode == 0, seg.stderr
    listed = json.loads(seg.stdout)
    assert {s["path"] for s in listed["segments"]} == {r.path for r in rows}
    assert d.cli("check", env=env).returncode == 0
    victim = save / rows[-1].path
    victim.unlink()  # a file vanishes behind our back: check finds it, --repair fixes it
    res = d.cli("check", env=env)
    assert res.returncode == c.EXIT_CHECK_PROBLEMS and "row-without-file" in res.stdout
    assert d.cli("check", "--repair", env=env).returncode == 0
    assert d.cli("check", env=env).returncode == 0
    out = tmp_path / "clip.mp4"
    first, last = rows[0], rows[-2]
    res = d.cli("export", "--camera", "t1", "--from", iso(first.start + 0.2), "--to", iso(last.end - 0.2),
                "-o", str(out), env=env)
    assert res.returncode == 0, res.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            str(out)], capture_output=True, text=True, check=True)
    assert float(probe.stdout) > 0.5
    for text in (d.output(), status.stdout, status.stderr, seg.stderr, res.stderr):
        assert server.password not in text
    cat.close()


def test_retention_and_crash_recovery(server: DatabaseServer, daemon_factory: DaemonFactory) -> None:
    url, full = db_url(server)
    env = {PW_ENV: server.password}
    cap = 200_000
    d = daemon_factory(config(url, ["t1"], clearWhenFilePathReachGB=cap / 1e9), env)
    save = d.save_path
    cat = open_catalog(full, save)
    wait_for(lambda: len(cat.segments(states=("deleted",))) >= 3, 90, "retention deleting", proc=d.proc)
    d.signal(signal.SIGKILL)
    d.wait(10)
    wait_for(lambda: not d.ffmpegs(), 15, "the killed daemon's ffmpeg to exit")
    before = len(cat.segments(states=("complete", "deleting", "deleted")))
    d.start()  # startup recovery: files left without a row are catalogued, totals stay exact
    wait_for(lambda: len(cat.segments(states=("complete", "deleting", "deleted"))) >= before + 3, 60,
             "recording again", proc=d.proc)
    assert d.stop(30) == 0
    res = d.cli("check", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    live = {r.path: r.size for r in cat.segments(states=("complete", "deleting"))}
    assert live == our_files(save)
    node = cat.segments()[0].node_id
    own = Catalog(save / ".cctv" / c.CATALOG_FILENAME, save, url=full, node_id=node)
    assert own.total_bytes() == sum(live.values())  # segment_totals exact after the crash
    deleted = [r.start for r in cat.segments(states=("deleted",))]
    assert max(deleted) <= min(r.start for r in cat.segments())  # oldest first
    own.close()
    cat.close()


def iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")


def test_database_outage_loses_no_row_and_no_footage(daemon_factory: DaemonFactory) -> None:
    """PostgreSQL stopped for 30 s while recording: recording goes on, the segments finished meanwhile are held and
    catalogued when it is back: every file has exactly one row, and the footage has no gap."""
    from cctv_daemon.catalog.rows import with_gaps
    from tests.support.databases import PostgresServer, serve

    gen = serve(PostgresServer)  # our own server: the session's one is never taken down
    own = next(gen)
    try:
        url, full = db_url(own)
        env = {PW_ENV: own.password}
        d = daemon_factory(config(url, ["t1"]), env)
        save = d.save_path
        cat = open_catalog(full, save)
        wait_for(lambda: len(cat.segments()) >= 3, 60, "3 segments catalogued", proc=d.proc)
        cat.close()
        outage = own.outage(30)
        wait_for(lambda: d.events("catalog_database_unavailable"), 60, "the outage noticed", proc=d.proc)
        during = len(our_files(save))
        status = wait_for(lambda: (r := d.cli("status", env=env)) and "heldRows" in r.stdout and r, 30,
                          "status showing the held rows")
        assert "database=UNAVAILABLE" in status.stdout and own.password not in status.stdout + status.stderr
        outage.join()
        wait_for(lambda: d.events("catalog_database_back"), 60, "the held rows catalogued", proc=d.proc)
        assert len(our_files(save)) >= during + 20  # recording went on through the outage
        assert d.stop(30) == 0
        cat = open_catalog(full, save)
        rows = cat.segments(states=("complete", "deleting", "deleted", "missing"))
        paths = [r.path for r in rows]
        assert len(paths) == len(set(paths))  # exactly one row per file
        assert set(paths) == set(our_files(save))
        assert with_gaps(cat.segments()) == []  # no footage lost
        assert own.password not in d.output()
        cat.close()
    finally:
        gen.close()


def probe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def test_another_nodes_uploaded_footage_exports_from_s3(postgres_server: DatabaseServer, moto_server: MotoServer,
                                                        daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    """Node A records and uploads, stops, and its local files are gone; node B (another fleet.nodeId on the same
    database and bucket, not recording) exports a range of A's footage through its API and its CLI: a playable
    clip of only that range, read from S3 into a temporary folder that is removed afterwards. A range with a
    segment of another node that is not uploaded is refused naming that node (API 409, CLI exit 1)."""
    url, full = db_url(postgres_server)
    env = {PW_ENV: postgres_server.password, "CCTV_UPLOAD_BACKOFF_S": "0.3,1.5"}
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    secret = "s3cr3t-key-of-the-fleet"

    def node_config(node: str, enabled: bool) -> dict[str, Any]:
        cfg = config(url, ["t1"])
        cfg["cameras"][0]["enabled"] = enabled
        cfg["fleet"] = {"nodeId": node}
        cfg["s3Config"] = {"s3Bucket": BUCKET, "endpointUrl": moto_server.endpoint, "addressingStyle": "path"}
        cfg["awsCredentials"] = {"accessKeyId": "k", "secretAccessKey": secret, "region": "us-east-1"}
        return cfg

    a = daemon_factory(node_config("node-a", True), env, name="a")
    cat = open_catalog(full, a.save_path)

    def uploaded() -> list[Any]:
        return [r for r in cat.segments() if r.upload_state == "uploaded"]

    wait_for(lambda: len(uploaded()) >= 6, 90, "6 segments uploaded", proc=a.proc)
    assert a.stop(30) == 0
    rows = uploaded()
    assert {r.node_id for r in rows} == {"node-a"}
    for f in a.save_path.glob("t1/**/*.mp4"):
        f.unlink()  # node A's disk is gone: only S3 holds its footage now
    as_a = Catalog(a.save_path / ".cctv" / c.CATALOG_FILENAME, a.save_path, url=full, node_id="node-a")
    as_a.set_state(rows[3].path, "deleted", "removed after upload")  # as clearAfterUpload does: still in S3
    as_a.close()
    assert rows[3].path in {r.path for r in cat.segments(states=("deleted",))}
    tmp_b = tmp_path / "tmp-b"
    tmp_b.mkdir()
    b = daemon_factory(node_config("node-b", False), {**env, "TMPDIR": str(tmp_b)}, name="b")
    api = Api(b)
    lo, hi = rows[1].start + 0.3, rows[4].end - 0.3
    got = api.get("/api/export", params={"camera": "t1", "from": iso(lo), "to": iso(hi)})
    assert got.status_code == 200, got.text
    clip = tmp_path / "api.mp4"
    clip.write_bytes(got.content)
    # only the range: from the keyframe at or before `from` (1 s GOP here) to the frame at or after `to`
    assert hi - lo - 0.1 <= probe_duration(clip) <= hi - lo + 1.1
    wait_for(lambda: not any(tmp_b.iterdir()), 10, "the S3 copies removed after the stream")
    assert b.events("export_fetched_from_s3")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = b.cli("export", "--camera", "t1", "--from", iso(lo), "--to", iso(hi), "-o", str(out_dir / "cli.mp4"),
                env=env)
    assert res.returncode == 0, res.stderr
    assert hi - lo - 0.1 <= probe_duration(out_dir / "cli.mp4") <= hi - lo + 1.1
    assert [p.name for p in out_dir.iterdir()] == ["cli.mp4"]  # its temporary folder is gone
    # a segment of another node not uploaded yet: the error names the node
    last = rows[-1]
    held = f"t1/elsewhere/{PurePosixPath(last.path).name}"
    cat.add_rows([last._replace(path=held, start=last.end + 5, end=last.end + 6, upload_state=None)])
    refused = api.get("/api/export", params={"camera": "t1", "from": iso(last.end + 5.1), "to": iso(last.end + 5.9)})
    assert refused.status_code == 409 and "reader" in refused.json()["detail"], refused.text
    res2 = b.cli("export", "--camera", "t1", "--from", iso(last.end + 5.1), "--to", iso(last.end + 5.9),
                 "-o", str(out_dir / "no.mp4"), env=env)
    assert res2.returncode == c.EXIT_RUNTIME and "reader" in res2.stderr, res2.stderr
    # an uploaded object gone from S3: a clear error, no credential in it
    s3.delete_object(Bucket=BUCKET, Key=str(cat.uploaded_key(rows[2].path, "node-a")))
    gone = api.get("/api/export", params={"camera": "t1", "from": iso(lo), "to": iso(hi)})
    assert gone.status_code == 404 and rows[2].path in gone.json()["detail"], gone.text
    wait_for(lambda: not any(tmp_b.iterdir()), 10, "the S3 copies removed after the failure")
    assert b.stop(30) == 0
    for text in (a.output(), b.output(), res.stderr, res2.stderr, got.headers.get("X-Export-Id", ""), gone.text):
        assert secret not in text and postgres_server.password not in text
    cat.close()
