"""A daemon started while its catalog database (catalog.url) is down keeps running (real PostgreSQL/MariaDB servers
from tests/support/databases.py, stopped before the daemons start and started later): without fleet shards it
records at once, holds the finished segments' rows and, when the database answers, migrates the schema and
catalogues every one of them (plus what its startup recovery finds); with fleet shards it holds no lease, records
nothing, says in `status`, `/api/status` and the log that it waits for the catalog database, and takes its cameras
once it answers. A password the server refuses is still a config error (exit 2). The password shows nowhere."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.catalog.rows import with_gaps
from cctv_daemon.core import constants as c
from tests.conftest import DaemonFactory
from tests.integration.test_catalog_db import BUCKET, PW_ENV, config, db_url, open_catalog, our_files
from tests.support.api import Api
from tests.support.daemon import DaemonProc, wait_for
from tests.support.databases import DatabaseServer, MariaDBServer, PostgresServer, serve
from tests.support.s3 import MotoServer


@pytest.fixture(params=["postgresql", "mariadb"])
def stopped_server(request: pytest.FixtureRequest) -> Iterator[DatabaseServer]:
    """A server of our own (the session's ones are never taken down)."""
    gen = serve(PostgresServer if request.param == "postgresql" else MariaDBServer)
    server = next(gen)
    try:
        yield server
    finally:
        gen.close()


def status(d: DaemonProc, env: dict[str, str]) -> dict[str, Any]:
    done = d.cli("status", "--json", env=env)
    return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else {}


def recording(d: DaemonProc) -> bool:
    """An ffmpeg of this daemon writes segments (`-f segment`, or inside a tee with the live view)."""
    return any("segment" in (argv := p.cmdline()) or any("f=segment" in a for a in argv) for p in d.ffmpegs())


def test_started_while_the_database_is_down(stopped_server: DatabaseServer, daemon_factory: DaemonFactory,
                                            moto_server: MotoServer) -> None:
    server = stopped_server
    url, full = db_url(server)
    fleet_url, fleet_full = db_url(server)
    env = {PW_ENV: server.password, "CCTV_UPLOAD_BACKOFF_S": "0.3,1.5"}
    moto_server.client().create_bucket(Bucket=BUCKET)
    server.stop()
    single_cfg = config(url, ["t1"])  # uploads too: they begin once the database answers
    single_cfg["s3Config"] = {"s3Bucket": BUCKET, "endpointUrl": moto_server.endpoint, "addressingStyle": "path"}
    single_cfg["awsCredentials"] = {"accessKeyId": "k", "secretAccessKey": "s3cr3t-key", "region": "us-east-1"}
    single = daemon_factory(single_cfg, env, name="single")
    fleet_cfg = {**config(fleet_url, ["f1"]), "fleet": {"shards": 2, "shard": 0, "nodeId": "node-f",
                                                        "leaseSeconds": 3}}
    fleet = daemon_factory(fleet_cfg, env, name="fleet")
    # single node: records at once, the rows held
    single.wait_segments("t1", 3, 60)
    st = wait_for(lambda: (s := status(single, env)) and s["components"]["catalog"].get("heldRows") and s, 30,
                  "status showing the held rows", proc=single.proc)
    cat_status = st["components"]["catalog"]
    assert cat_status["database"] == "UNAVAILABLE" and cat_status["waitingForDatabase"] is True
    assert single.events("catalog_database_unreachable_at_start")
    # fleet node: no lease, nothing recorded, and it says why
    st = wait_for(lambda: (s := status(fleet, env)) and s["cameras"].get("f1", {}).get("state") == "standby" and s,
                  30, "the fleet node lists f1 as standby", proc=fleet.proc)
    f = st["components"]["fleet"]
    assert not f["db_ok"] and f["error"].startswith("waiting for the catalog database: ") and f["held"] == []
    assert st["cameras"]["f1"]["reason"].startswith("no lease: waiting for the catalog database"), st["cameras"]
    text = fleet.cli("status", env=env).stdout
    assert "LEASE DATABASE UNREACHABLE (no camera is recorded here until it answers)" in text
    api_status = Api(fleet).get("/api/status").json()
    assert api_status["components"]["fleet"]["db_ok"] is False
    assert fleet.events("fleet_waits_for_catalog")
    time.sleep(3)  # a lease period: still nothing recorded, still running
    assert not recording(fleet) and not fleet.segments("f1") and fleet.proc is not None and fleet.proc.poll() is None
    assert single.proc is not None and single.proc.poll() is None
    down_files = len(our_files(single.save_path))

    server.start()
    single.wait_event("catalog_database_back", 60)
    reader = open_catalog(full, single.save_path)
    wait_for(lambda: sum(r.upload_state == "uploaded" for r in reader.segments()) >= down_files, 60,
             "the segments recorded before the database answered uploaded", proc=single.proc)
    reader.close()
    wait_for(lambda: recording(fleet), 40, "the fleet node records f1 once the database answers", proc=fleet.proc)
    fleet.wait_segments("f1", 2, 30)
    assert single.stop(30) == 0 and fleet.stop(30) == 0
    assert single.events("catalog_schema_ready") and single.events("catalog_recovered_late")
    for d, full_url in ((single, full), (fleet, fleet_full)):
        cat = open_catalog(full_url, d.save_path)
        rows = cat.segments(states=("complete", "deleting", "deleted", "missing"))
        paths = [r.path for r in rows]
        assert len(paths) == len(set(paths)) and set(paths) == set(our_files(d.save_path))  # one row per file
        assert with_gaps(cat.segments()) == []
        cat.close()
        assert "Traceback" not in d.output() and server.password not in d.output()
    assert len(our_files(single.save_path)) >= down_files >= 3


def test_a_refused_password_is_a_config_error(postgres_server: DatabaseServer, daemon_factory: DaemonFactory) -> None:
    """The server answers and refuses us: waiting does not help, `run` exits 2 naming catalog.url."""
    url, _full = db_url(postgres_server)
    wrong = "not-the-Password-1"
    d = daemon_factory(config(url, ["t1"]), {PW_ENV: wrong})
    assert d.wait(60) == c.EXIT_USAGE
    out = d.output()
    assert "catalog.url" in out and "password authentication failed" in out, out[-2000:]
    assert wrong not in out and "Traceback" not in out
    assert not list(Path(d.save_path).glob("t1/*/*.mp4"))
