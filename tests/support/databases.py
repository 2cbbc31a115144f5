"""Throwaway database servers for tests: a real PostgreSQL and a real MariaDB from Debian's packages
(`postgresql`, `mariadb-server`), each in its own temp dir, on a random free loopback port, with a unix socket
in that dir, and a database plus a user with a random password for the tests. Nothing depends on the system
services (they are never started). The common part (process, outage, reaper) is in db_server.py.

As root, each server runs as its package's system user (``postgres`` / ``mysql``): PostgreSQL's ``initdb``
refuses root. As any other user it runs as that user. ``stop()``/``start()`` (or ``outage(seconds)``) take a
server down and bring it back on the same port with its data kept: a real database outage.

The URLs carry the password: never print them (``repr`` hides it; failure messages and logs shown by the
helpers have it replaced by ``***``).
"""


from __future__ import annotations

import glob
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.db_server import (
    TEST_DATABASE,
    TEST_USER,
    DatabaseServer,
    Outage,
    Unavailable,
    reap_leftovers,
)

__all__ = ["TEST_DATABASE", "TEST_USER", "DatabaseServer", "MariaDBServer", "Outage", "PostgresServer",
           "Unavailable", "reap_leftovers", "serve"]


def postgres_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` with ``initdb`` and ``postgres`` (Debian's layout), else PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).parent
    raise Unavailable("PostgreSQL is not installed (apt-get install postgresql; see .ci/test)")


def _mariadb_binaries() -> tuple[str, str]:
    install = shutil.which("mariadb-install-db")
    server = shutil.which("mariadbd") or ("/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None)
    if not install or not server:
        raise Unavailable("MariaDB is not installed (apt-get install mariadb-server; see .ci/test)")
    return install, server


class PostgresServer(DatabaseServer):
    """``initdb`` + ``postgres -p PORT -k SOCKETDIR -c listen_addresses=127.0.0.1``. Local (socket) connections
    are trusted, TCP needs the password (scram-sha-256). fsync is off: a commit still reaches the OS before it
    returns (``synchronous_commit`` stays on), so committed rows survive a server stop or SIGKILL, not a machine
    crash, which is all a test needs."""

    kind = "postgresql"
    service_user = "postgres"
    scheme = "postgresql+psycopg"

    def _check_available(self) -> None:
        self.bindir = postgres_bindir()
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"psycopg is not installed ({exc}); pip install -e '.[test]'") from None

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    def _initialise(self) -> None:
        self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-E", "UTF8",
                   "--no-locale", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256"], "initdb")

    def _command(self) -> list[str]:
        return [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                "-c", "full_page_writes=off", "-c", "shared_buffers=32MB",
                "-c", "max_connections=100", "-c", "logging_collector=off"]

    def _stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown: disconnects clients, then a clean checkpoint

    def _admin(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname=database,
                               connect_timeout=2, autocommit=True)

    def _answers(self) -> bool:
        import psycopg

        try:
            self._admin().close()
            return True
        except psycopg.OperationalError:
            return False

    def _create_account(self) -> None:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(self.user), sql.Literal(self.password)))
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                       sql.Identifier(self.user)))
        return self.url_for(name)

    def connect(self, database: str | None = None) -> Any:
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               dbname=database or self.database, connect_timeout=5)


class MariaDBServer(DatabaseServer):
    """``mariadb-install-db`` + ``mariadbd --socket=… --port=… --bind-address=127.0.0.1``. root has no password
    and is reached over the socket only; the test user connects over TCP with its password.
    ``innodb_flush_log_at_trx_commit=2``: each commit reaches the OS, so it survives a server SIGKILL."""

    kind = "mariadb"
    service_user = "mysql"
    scheme = "mysql+pymysql"

    def _check_available(self) -> None:
        self.install_db, self.mariadbd = _mariadb_binaries()
        try:
            import pymysql  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"PyMySQL is not installed ({exc}); pip install -e '.[test]'") from None

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / "mysqld.sock"

    def _initialise(self) -> None:
        assert self.dir is not None
        tmp = self.dir / "tmp"
        tmp.mkdir()
        self._hand_over(tmp)
        self._run([self.install_db, "--no-defaults", f"--datadir={self.data_dir}", f"--tmpdir={tmp}",
                   "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"],
                  "mariadb-install-db")

    def _command(self) -> list[str]:
        assert self.dir is not None
        return [self.mariadbd, "--no-defaults", f"--datadir={self.data_dir}", f"--socket={self.socket_path}",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={self.dir / 'mariadbd.pid'}",
                f"--tmpdir={self.dir / 'tmp'}", "--skip-name-resolve", "--skip-log-bin",
                "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2", "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci"]

    def _admin(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket_path), user="root", password="", database=database,
                               connect_timeout=2, autocommit=True)

    def _answers(self) -> bool:
        import pymysql

        try:
            self._admin().close()
            return True
        except pymysql.err.OperationalError:
            return False

    def _create_account(self) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (self.user, self.password))
        finally:
            conn.close()
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be letters, digits and _ (got {name!r})")
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
                cur.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@'%%'", (self.user,))
        finally:
            conn.close()
        return self.url_for(name)

    def connect(self, database: str | None = None) -> Any:
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                               database=database or self.database, connect_timeout=5)


def serve(cls: type[DatabaseServer]) -> Iterator[DatabaseServer]:
    """For a fixture: a started server of ``cls`` until the generator is closed, then stopped and deleted.
    Skips (pytest.skip, naming what is missing) only when its binaries or driver are not installed."""
    import pytest

    server = cls()
    try:
        server.start()
    except Unavailable as exc:
        server.close()
        pytest.skip(str(exc))
    except BaseException:
        server.close()
        raise
    try:
        yield server
    finally:
        server.close()
