"""Where the catalog lives: `catalog.url` turned into a SQLAlchemy engine. The default is the embedded SQLite file
{stateDir}/catalog.sqlite3, opened through catalog/sqlite_db.py (WAL, synchronous FULL but for the commits of
CatalogDb.begin(durable=False), read-only opening that never creates -wal/-shm: the one place for SQLite's
connection settings). `postgresql://` runs on psycopg 3,
`mysql://` / `mariadb://` on PyMySQL.

The URL's password is a secret: it is shown only through `safe_url()` / `error_text()` (hidden), and registered for
redaction with the other secrets of the config (config/model.py Config.secrets)."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from cctv_daemon.catalog import sqlite_db
from cctv_daemon.catalog.schema import Tables, tables
from cctv_daemon.config.catalog_url import KEY, hide, parse_url, safe_url

__all__ = ["KEY", "CatalogDb", "error_text", "is_connection_error", "is_refusal", "is_unreachable", "open_server",
           "open_sqlite", "parse_url", "safe_url"]

CONNECT_TIMEOUT_S = 5


def error_text(err: BaseException, url: URL | None = None) -> str:
    """A one-line, password-free description of a database error (no SQL, no link to the SQLAlchemy docs)."""
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err).strip().splitlines()
    line = " ".join(t.strip() for t in text if t.strip())[:500] or type(err).__name__
    password = url.password if url is not None else None
    return hide(line, str(password) if password else None)


def is_connection_error(err: BaseException) -> bool:
    """Is this the database being away (a server down, a dropped connection), not a bad statement?"""
    if isinstance(err, exc.DBAPIError) and err.connection_invalidated:
        return True
    if isinstance(err, exc.DisconnectionError):
        return True
    if isinstance(err, (exc.OperationalError, exc.InterfaceError)):
        orig = getattr(err, "orig", None)
        return not (orig is not None and type(orig).__module__.startswith("sqlite3"))
    return False


_REFUSED_MYSQL = {1044, 1045, 1049, 1251, 1698}  # access denied (to the database), unknown database, auth plugin
_REFUSED_PG = ("password authentication failed", "authentication failed", "no pg_hba.conf entry", "does not exist",
               "permission denied")


def is_refusal(err: BaseException) -> bool:
    """Did the server answer and refuse us (wrong password, unknown user or database, not allowed)? Unlike a server
    that is down or out of reach, waiting does not help: a config error (docs/scale-out.md)."""
    orig = getattr(err, "orig", None)
    if orig is None:
        return False
    module = type(orig).__module__
    if module.startswith("pymysql"):
        return bool(orig.args) and orig.args[0] in _REFUSED_MYSQL
    if module.startswith("psycopg"):
        text = str(orig).lower()
        return "fatal:" in text and any(p in text for p in _REFUSED_PG)
    return False


def is_unreachable(err: BaseException) -> bool:
    """The database is down or out of reach (refused TCP connection, timeout, a server starting or stopping, a
    name that does not resolve yet): a node waits for it. Not a refusal of our credentials."""
    return is_connection_error(err) and not is_refusal(err)


class CatalogDb:
    """One catalog database: its engine, its tables (with the prefix), this node's id and the lock that keeps one
    statement sequence at a time per process (SQLite shares one connection between threads, as before)."""

    def __init__(self, engine: Engine, tbl: Tables, node_id: str, *, url: URL, read_only: bool = False,
                 sqlite_path: Path | None = None, sqlite_conn: sqlite3.Connection | None = None) -> None:
        self.engine = engine
        self.sqlite_conn = sqlite_conn  # the writable SQLite file's one connection (begin(durable=False) uses it)
        self.t = tbl
        self.node_id = node_id
        self.url = url
        self.read_only = read_only
        self.sqlite_path = sqlite_path
        self.dialect = engine.dialect.name  # sqlite / postgresql / mysql
        # A SQLite catalog is single-node (as before): every row is this node's, whatever its node_id says.
        self.scoped = self.dialect != "sqlite"
        self.lock = threading.RLock()
        self.cache: dict[object, object] = {}  # statements built once (catalog/writes.py, reads.py)
        self.raw_writes = True  # a segment's row and the totals read through sqlite3 directly (writes.add_one_sqlite,
        # reads._raw_rows); tests compare
        # The writable SQLite file's connection is left at synchronous NORMAL after a segment row's commit (the next
        # row needs no switch) and set back to FULL before any other transaction on it begins: the engine's
        # "begin" event (every SQLAlchemy transaction, whoever opens it; only read() is left out) and raw(durable).
        self._relaxed = False
        self._relaxing = False
        if sqlite_conn is not None:
            # called before BEGIN IMMEDIATE is sent (_sqlite_begin); a weak reference: the map keeps nothing alive
            _BEFORE_BEGIN[engine] = weakref.WeakMethod(self._before_begin)

    @property
    def shown(self) -> str:
        return str(self.sqlite_path) if self.sqlite_path is not None else safe_url(self.url)

    def _relax(self) -> None:
        """synchronous NORMAL for the segment row's commit about to run (held by self.lock)."""
        if not self._relaxed:
            assert self.sqlite_conn is not None
            self.sqlite_conn.execute("PRAGMA synchronous = NORMAL")
            self._relaxed = True

    def _durable_again(self) -> None:
        """synchronous FULL (sqlite_db.SYNCHRONOUS) again for a commit that must be fsynced (held by self.lock)."""
        if self._relaxed:
            assert self.sqlite_conn is not None
            self.sqlite_conn.execute(f"PRAGMA synchronous = {sqlite_db.SYNCHRONOUS}")
            self._relaxed = False

    def _before_begin(self, conn: Connection) -> None:
        if not self._relaxing and not conn.info.get("reads_only"):
            self._durable_again()

    @contextmanager
    def begin(self, durable: bool = True) -> Iterator[Connection]:
        """One transaction (SQLite: BEGIN IMMEDIATE, as before), committed on leaving, rolled back on an error.

        durable=False (a SQLite file; other backends ignore it): the commit is not fsynced (synchronous NORMAL for
        this transaction, WAL). A process crash loses nothing; a power cut may lose such commits, but only the
        last ones: the next durable commit fsyncs the write-ahead log, and with it every commit before it. Only for
        rows that startup recovery rebuilds from the files (a segment's row: docs/segment-lifecycle.md). The
        connection stays at NORMAL afterwards until another transaction begins: that one sets FULL again first
        (_before_begin), so consecutive segment rows switch nothing."""
        relax = self.sqlite_conn is not None and not durable
        with self.lock:
            if relax:
                self._relax()
            self._relaxing = relax
            try:
                with self.engine.begin() as conn:
                    self._relaxing = False
                    yield conn
            finally:
                self._relaxing = False

    @contextmanager
    def raw(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """The writable SQLite file's sqlite3 connection, under the lock, with begin()'s synchronous setting (the
        caller runs its own BEGIN IMMEDIATE ... COMMIT: catalog/writes.py add_one_sqlite)."""
        raw = self.sqlite_conn
        assert raw is not None
        with self.lock:
            if durable:
                self._durable_again()
            else:
                self._relax()
            yield raw

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """Reads (SQLite: each statement on its own, as before: no transaction to begin and end, no write lock)."""
        with self.mode("NONE", reads_only=True) as conn:
            yield conn

    @contextmanager
    def mode(self, begin_mode: str, reads_only: bool = False) -> Iterator[Connection]:
        """A connection whose SQLite transactions begin with BEGIN `begin_mode` ("NONE": autocommit, each
        statement its own: what a PRAGMA such as wal_checkpoint needs). Other backends ignore it."""
        with self.lock, self.engine.connect() as conn:
            conn.info["begin_mode"] = begin_mode
            if reads_only:  # statements that commit nothing: they leave synchronous as it is
                conn.info["reads_only"] = True
            try:
                yield conn
                if conn.in_transaction():
                    conn.commit()
            finally:
                conn.info.pop("begin_mode", None)
                conn.info.pop("reads_only", None)

    def close(self) -> None:
        with self.lock:
            self.engine.dispose()


_BEFORE_BEGIN: weakref.WeakKeyDictionary[Engine, weakref.WeakMethod[Callable[[Connection], None]]] = (
    weakref.WeakKeyDictionary())


def _sqlite_begin(immediate: bool) -> Any:
    def begin(conn: Connection) -> None:
        ref = _BEFORE_BEGIN.get(conn.engine)
        before = ref() if ref is not None else None
        if before is not None:  # the writable file's CatalogDb: synchronous FULL again (outside the transaction)
            before(conn)
        mode = conn.info.get("begin_mode") or ("IMMEDIATE" if immediate else "DEFERRED")
        if mode != "NONE":
            conn.exec_driver_sql(f"BEGIN {mode}")
    return begin


def sqlite_engine(path: Path | None, *, read_only: bool = False, raw: Any = None) -> Engine:
    """An engine on one shared sqlite3 connection made by sqlite_db (`raw`: an already open one)."""
    if raw is not None:
        conn = raw
    elif path is None:
        conn = sqlite_db.connect_memory()
    elif read_only:
        conn = sqlite_db.connect_read_only(path)
    else:
        conn = sqlite_db.connect(path)  # synchronous FULL: see docs/segment-lifecycle.md
    engine = create_engine("sqlite://", creator=lambda: conn, poolclass=StaticPool)
    event.listen(engine, "begin", _sqlite_begin(immediate=not read_only))
    return engine


def server_engine(url: URL) -> Engine:
    if url.get_backend_name() == "postgresql":
        # synchronous_commit stays on: a committed row must survive the server being killed
        args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "options": "-c synchronous_commit=on"}
        return create_engine(url, pool_pre_ping=True, pool_size=3, max_overflow=5, connect_args=args)
    args = {"connect_timeout": CONNECT_TIMEOUT_S, "charset": "utf8mb4"}
    return create_engine(url, pool_pre_ping=True, pool_size=3, max_overflow=5, pool_recycle=3600,
                         isolation_level="READ COMMITTED", connect_args=args)


def open_server(url: URL, node_id: str, prefix: str, read_only: bool = False) -> CatalogDb:
    return CatalogDb(server_engine(url), tables(prefix), node_id, url=url, read_only=read_only)


def open_sqlite(path: Path, node_id: str, prefix: str, *, read_only: bool = False, memory: bool = False,
                raw: Any = None) -> CatalogDb:
    own = None
    if raw is None and not memory and not read_only:
        raw = own = sqlite_db.connect(path)  # synchronous FULL: see docs/segment-lifecycle.md
    engine = sqlite_engine(None if memory else path, read_only=read_only and not memory and raw is None, raw=raw)
    return CatalogDb(engine, tables(prefix), node_id, url=make_url(f"sqlite:///{path}"), read_only=read_only,
                     sqlite_path=path, sqlite_conn=own)
