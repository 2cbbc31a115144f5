"""The database fixtures work: real PostgreSQL and MariaDB servers (Debian packages) that a test reaches with
psycopg / PyMySQL and SQLAlchemy by URL, on loopback only, and that can be taken down and brought back with their
data (a real outage)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa

from tests.support import databases
from tests.support.databases import DatabaseServer, MariaDBServer, PostgresServer

BACKENDS = ["postgres_server", "mariadb_server"]


def _round_trip(conn: Any, table: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, camera VARCHAR(64) NOT NULL)")
    cur.executemany(f"INSERT INTO {table} (id, camera) VALUES (%s, %s)", [(1, "gate"), (2, "yard")])
    conn.commit()
    cur.execute(f"SELECT id, camera FROM {table} ORDER BY id")
    rows = [tuple(r) for r in cur.fetchall()]
    cur.execute(f"DROP TABLE {table}")
    conn.commit()
    return rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_driver_creates_inserts_selects(request: pytest.FixtureRequest, backend: str) -> None:
    server: DatabaseServer = request.getfixturevalue(backend)
    conn = server.connect()
    try:
        assert _round_trip(conn, "fixture_check") == [(1, "gate"), (2, "yard")]
    finally:
        conn.close()


def test_urls_are_sqlalchemy_urls(postgres_url: str, mariadb_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://cctv:")
    assert mariadb_url.startswith("mysql+pymysql://cctv:")
    for url in (postgres_url, mariadb_url):
        engine = sa.create_engine(url)
        try:
            meta = sa.MetaData()
            t = sa.Table("sa_check", meta, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("name", sa.String(64), nullable=False))
            meta.create_all(engine)
            with engine.begin() as c:
                c.execute(t.insert(), [{"id": 1, "name": "gate"}, {"id": 2, "name": "yard"}])
            with engine.connect() as c:
                assert c.execute(sa.select(t.c.name).order_by(t.c.id)).scalars().all() == ["gate", "yard"]
            meta.drop_all(engine)
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_fresh_database_for_a_test(request: pytest.FixtureRequest, backend: str) -> None:
    server: DatabaseServer = request.getfixturevalue(backend)
    name = f"fresh_{backend.split('_')[0]}"
    url = server.create_database(name)
    assert url.endswith(f"/{name}")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_listens_on_loopback_only_and_hides_its_password(request: pytest.FixtureRequest, backend: str) -> None:
    server: DatabaseServer = request.getfixturevalue(backend)
    assert server.proc is not None
    listening = {c.laddr.ip for c in psutil.Process(server.proc.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}, listening
    assert server.password not in repr(server)
    assert server.password not in server.log_text()
    bad = server.url.replace(server.password, "wrong-password")
    engine = sa.create_engine(bad)
    try:
        with pytest.raises(sa.exc.OperationalError) as caught, engine.connect():
            pass
        assert server.password not in str(caught.value)
    finally:
        engine.dispose()


@pytest.mark.parametrize("cls", [PostgresServer, MariaDBServer])
@pytest.mark.parametrize("crash", [False, True], ids=["stop", "kill"])
def test_outage_keeps_the_data(cls: type[DatabaseServer], crash: bool) -> None:
    """An outage (own server, so the session's servers stay up): down for its whole length, refusing
    connections; back on the same port with every committed row."""
    server = cls()
    try:
        server.start()
    except databases.Unavailable as exc:
        server.close()
        pytest.skip(str(exc))
    try:
        engine = sa.create_engine(server.url, pool_pre_ping=True)
        meta = sa.MetaData()
        t = sa.Table("kept", meta, sa.Column("id", sa.Integer, primary_key=True))
        meta.create_all(engine)
        with engine.begin() as c:
            c.execute(t.insert(), [{"id": i} for i in range(1, 101)])  # MySQL: id 0 means "next auto value"
        port = server.port
        outage = server.outage(3.0, crash=crash)
        assert not server.running
        with pytest.raises(sa.exc.OperationalError), engine.connect():
            pass
        outage.join()
        assert outage.down_at is not None and outage.up_at is not None
        assert outage.up_at - outage.down_at >= 3.0
        assert server.running and server.port == port
        with engine.connect() as c:
            assert c.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 100
        engine.dispose()
    finally:
        server.close()
    assert server.dir is not None and not server.dir.exists()


def test_servers_start_within_seconds(postgres_server: DatabaseServer, mariadb_server: DatabaseServer) -> None:
    # initdb / mariadb-install-db included; generous for a loaded 2-core machine (measured 1.5-5 s)
    for server in (postgres_server, mariadb_server):
        assert server.startup_seconds is not None and server.startup_seconds < 30, server.kind
    started = time.monotonic()
    conn = postgres_server.connect()
    conn.close()
    assert time.monotonic() - started < 5


def test_servers_left_by_a_killed_test_run_are_reaped() -> None:
    """A test process killed before its teardown leaves its server running; the next run stops and deletes it."""
    script = ("import os, sys; sys.path.insert(0, '.');"
              "from tests.support.databases import MariaDBServer;"
              "s = MariaDBServer().start(); print(s.dir, s.proc.pid, flush=True); os._exit(0)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    if "Unavailable" in done.stderr:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr
    left_dir, left_pid = done.stdout.split()
    assert psutil.pid_exists(int(left_pid)) and Path(left_dir).is_dir()
    assert Path(left_dir) in databases.reap_leftovers("mariadb")
    assert not Path(left_dir).exists()
    assert not psutil.pid_exists(int(left_pid)) or psutil.Process(int(left_pid)).status() == psutil.STATUS_ZOMBIE
