"""The segment catalog: one row per finished segment (table `segments`), with `segment_totals`, `uploads` (owned
by upload/queue.py) and `recordings` (catalog/labels.py), in the database `catalog.url` names: by default the
embedded SQLite file {stateDir}/catalog.sqlite3 (WAL, synchronous FULL but for a segment's own row), else
PostgreSQL or MySQL/MariaDB (catalog/engine.py). Tables: catalog/schema.py; migrations: catalog/migrate.py; reads:
catalog/reads.py; writes and totals: catalog/writes.py. See docs/segment-lifecycle.md for when rows change."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Connection, exc, text, update

from cctv_daemon.catalog import migrate, sqlite_db, writes
from cctv_daemon.catalog.engine import (
    KEY,
    CatalogDb,
    error_text,
    is_unreachable,
    open_server,
    open_sqlite,
    parse_url,
)
from cctv_daemon.catalog.errors import CatalogDamagedError, CatalogOpenError
from cctv_daemon.catalog.reads import CatalogReads
from cctv_daemon.catalog.rows import (
    GAP_TOLERANCE_S,
    LIVE_STATES,
    STATES,
    UPLOADED,
    Gap,
    SegmentRow,
    is_uploaded,
    with_gaps,
)
from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import Clock, SystemClock
from cctv_daemon.core.crash_hook import crash_point
from cctv_daemon.core.events import FinishedSegment
from cctv_daemon.segments import names as segment_names

if TYPE_CHECKING:
    from cctv_daemon.config.model import Config

__all__ = ["GAP_TOLERANCE_S", "LIVE_STATES", "STATES", "UPLOADED", "Catalog", "CatalogOpenError", "Gap",
           "SegmentRow", "db_path", "is_uploaded", "with_gaps"]

log = structlog.get_logger("cctv_daemon.catalog")

# A finished segment's row is committed without its own fsync on SQLite (a power cut may lose the last ones; startup
# recovery rebuilds them from their files, which are fsynced before). False since the fifth CPU pass (bench/fsync.py).
SEGMENT_ROWS_DURABLE = False

SCHEMA_VERSION = 2  # SQLite's catalog_schema: 1 before the migrations (adopted in place), 2 since


def db_path(state_dir: Path) -> Path:
    return state_dir / c.CATALOG_FILENAME


def default_node_id() -> str:
    from cctv_daemon.fleet.identity import pod_name

    return pod_name()


class Catalog(CatalogReads):
    """Thread-safe (one lock per database). Opening creates or migrates the schema. A SQLite catalog that is corrupt
    or cannot be opened is moved aside (never deleted) and a new one is made, which startup recovery rebuilds from
    the files (catalog/recovery.py), so recording never waits on the catalog. With read_only (the read commands:
    `segments`, `export`, `check` without repairs) nothing is written to a SQLite file or created: a missing catalog
    reads as an empty one, one made before the migrations is read through a migrated private copy in memory."""

    def __init__(self, path: Path, save_path: Path, clock: Clock | None = None, *, read_only: bool = False,
                 url: str | None = None, node_id: str | None = None, prefix: str = "",
                 wait_for_database: bool = False) -> None:
        self.save_path = save_path
        self.clock = clock or SystemClock()
        self.read_only = read_only
        self.node_id = node_id if node_id is not None else default_node_id()
        self.prefix = prefix
        self.moved_aside: Path | None = None  # where a damaged catalog went, when one was found at opening
        self.moved_aside_reason: str | None = None
        # A database server that could not be reached at opening (wait_for_database: the daemon, which records
        # anyway): the error, until open_schema() succeeds. Its schema is not known to be there meanwhile.
        self.waiting: str | None = None
        parsed = parse_url(url) if url else None
        if parsed is not None and parsed.get_backend_name() == "sqlite":
            path, parsed = Path(str(parsed.database)), None
        self.path = path
        self.created = parsed is None and not path.exists()
        if parsed is not None:
            self.db = open_server(parsed, self.node_id, prefix, read_only)
            try:
                migrate.upgrade(self.db)
            except exc.SQLAlchemyError as err:
                if wait_for_database and is_unreachable(err):
                    self.waiting = error_text(err, parsed)
                    return
                self.db.close()
                raise CatalogOpenError(f"{KEY}: cannot use the catalog at {self.db.shown}: "
                                       f"{error_text(err, parsed)}") from None
            if not read_only:
                migrate.warn_if_prefix_hides_rows(self.db)
            return
        if read_only:
            self._open_read_only()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._open_and_verify()
        except (sqlite3.DatabaseError, exc.DBAPIError) as err:
            raw = err.orig if isinstance(err, exc.DBAPIError) else err
            if not isinstance(raw, sqlite3.DatabaseError) or not sqlite_db.is_damage(raw, path):
                raise
            self._move_aside(raw)
            self.db = self._open_and_verify()
        migrate.warn_if_prefix_hides_rows(self.db)

    @classmethod
    def for_state_dir(cls, state_dir: Path, save_path: Path, clock: Clock | None = None, *,
                      read_only: bool = False, node_id: str | None = None) -> Catalog:
        return cls(db_path(state_dir), save_path, clock, read_only=read_only, node_id=node_id)

    @classmethod
    def from_config(cls, config: Config, node_id: str, clock: Clock | None = None, *,
                    read_only: bool = False, wait_for_database: bool = False) -> Catalog:
        sc = config.storageConfig
        return cls(db_path(sc.state_dir), sc.savePath, clock, read_only=read_only, url=config.catalog.url,
                   node_id=node_id, prefix=config.catalog.tablePrefix, wait_for_database=wait_for_database)

    def open_schema(self) -> bool:
        """A catalog still `waiting` for its database: migrate it now. True when the schema is there (also when it
        already was); False while the database stays out of reach; CatalogError when it refuses us or its schema
        is newer than this program."""
        if self.waiting is None:
            return True
        try:
            migrate.upgrade(self.db)
        except exc.SQLAlchemyError as err:
            text = error_text(err, self.db.url)
            if is_unreachable(err):
                self.waiting = text
                return False
            raise CatalogOpenError(f"{KEY}: cannot use the catalog at {self.db.shown}: {text}") from None
        self.waiting = None
        return True

    @property
    def shown(self) -> str:
        """Where the catalog is, for messages (a URL's password hidden)."""
        return self.db.shown

    # -- opening ----------------------------------------------------------------------------------------
    def _open_and_verify(self) -> CatalogDb:
        db = open_sqlite(self.path, self.node_id, self.prefix)
        try:
            migrate.upgrade(db)
            with db.begin() as conn:
                result = str(conn.exec_driver_sql("PRAGMA quick_check(1)").scalar())
                if result.lower() != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {result}")
                # a write: a file we cannot write is as bad as a corrupt one
                conn.exec_driver_sql("PRAGMA user_version = 0")
        except BaseException:
            db.close()
            raise
        return db

    def _open_read_only(self) -> None:
        try:
            self._open_read_only_unchecked()
        except (sqlite3.DatabaseError, exc.DBAPIError) as err:
            raw = err.orig if isinstance(err, exc.DBAPIError) else err
            if not isinstance(raw, sqlite3.DatabaseError) or not sqlite_db.is_damage(raw, self.path):
                raise
            if (db := getattr(self, "db", None)) is not None:
                db.close()
            raise CatalogDamagedError(
                f"the catalog {self.path} is damaged ({raw}); it is left as it is: the daemon moves it aside and "
                "rebuilds it from the files at its next start, or run `cctv-daemon check --rebuild` now") from None

    def _open_read_only_unchecked(self) -> None:
        if self.created:
            self.db = open_sqlite(self.path, self.node_id, self.prefix, read_only=True, memory=True)
            migrate.upgrade(self.db)
            return
        self.db = open_sqlite(self.path, self.node_id, self.prefix, read_only=True)
        if migrate.is_current(self.db):  # SchemaError when newer
            return
        # made before the migrations (or by an older program): read a migrated copy, never touch the file
        memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        with self.db.lock:
            raw = self.db.engine.raw_connection()
            try:
                raw.driver_connection.backup(memory)  # type: ignore[union-attr]
            finally:
                raw.close()
        self.db.close()
        self.db = open_sqlite(self.path, self.node_id, self.prefix, read_only=True, raw=memory)
        migrate.upgrade(self.db)

    def _move_aside(self, err: BaseException) -> None:
        """Keep the damaged file (and its -wal/-shm) in {stateDir}/damaged/ for a human, and start afresh."""
        stamp = datetime.fromtimestamp(self.clock.time(), tz=timezone.utc).strftime(c.TIME_FORMAT)
        dest_dir = self.path.parent / c.DAMAGED_DIRNAME
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f"{self.path.stem}-{stamp}{self.path.suffix}"
        n = 1
        while dest.exists():
            dest = dest_dir / f"{self.path.stem}-{stamp}~{n}{self.path.suffix}"
            n += 1
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, Path(f"{dest}{suffix}"))
        self.moved_aside, self.moved_aside_reason = dest, f"{type(err).__name__}: {err}"
        self.created = True
        log.error("catalog_moved_aside", path=str(self.path), moved_to=str(dest), reason=self.moved_aside_reason,
                  action="a new catalog is rebuilt from the files; recording goes on")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One committed transaction (SQLite: BEGIN IMMEDIATE)."""
        with self.db.begin() as conn:
            yield conn

    def query(self, sql: str, params: Iterable[object] = ()) -> list[tuple[object, ...]]:
        """Raw SQL in the driver's own dialect (tests and tools on SQLite; the daemon uses Core statements)."""
        with self.db.mode("NONE") as conn:
            result = conn.exec_driver_sql(sql, tuple(params))
            return [tuple(r) for r in result.all()] if result.returns_rows else []

    def has_uploads_table(self) -> bool:
        return True  # part of the schema on every backend since the migrations

    # -- paths ----------------------------------------------------------------------------------------
    def rel(self, path: Path) -> str:
        return PurePosixPath(*path.relative_to(self.save_path).parts).as_posix()

    def abs(self, rel_path: str) -> Path:
        return self.save_path.joinpath(*PurePosixPath(rel_path).parts)

    # -- writes (catalog/writes.py) -------------------------------------------------------------------------
    def add_segment(self, seg: FinishedSegment) -> None:
        """Bus subscriber (first one): catalogue a finished segment. Idempotent."""
        crash_point("catalog.before_insert")
        rel = segment_names.rel_file(self.save_path, seg.file)  # no Path per segment: see core/events.py
        row = SegmentRow(rel, seg.camera, seg.feed_id, seg.start, seg.end, seg.size, media_duration=seg.media_duration)
        # Not fsynced on its own (SQLite): its file is final and durable already, and startup recovery catalogues
        # a file whose row a power cut lost (docs/segment-lifecycle.md, "Which commits are fsynced").
        if self.db.sqlite_conn is not None and self.db.raw_writes:
            with self.db.raw(SEGMENT_ROWS_DURABLE) as raw:
                if writes.add_one_sqlite(raw, self.db, row, seg.run_id, seg.recovered, self.clock.time()):
                    return
        self.add_rows([row], run_id=seg.run_id, recovered=seg.recovered, durable=SEGMENT_ROWS_DURABLE)

    def add_rows(self, rows: Iterable[SegmentRow], run_id: str | None = None, recovered: bool = False,
                 durable: bool = True) -> int:
        """Insert rows (state 'complete'); an existing live row is kept, a 'deleted'/'missing' row whose file
        is back is revived. Returns how many rows were added or revived. durable: see CatalogDb.begin."""
        now = self.clock.time()
        rows = list(rows)
        try:
            with self.db.begin(durable) as conn:
                return writes.add_rows(conn, self.db, rows, run_id, recovered, now)
        except exc.IntegrityError:  # another writer added one of these paths meanwhile: now it is seen
            with self.db.begin(durable) as conn:
                return writes.add_rows(conn, self.db, rows, run_id, recovered, now)

    def set_state(self, rel_path: str, state: str, reason: str | None = None,
                  abandon_upload: bool = False) -> None:
        assert state in STATES
        u = self.db.t.uploads
        with self.db.begin() as conn:
            writes.set_state(conn, self.db, rel_path, state, reason, self.clock.time())
            if abandon_upload:
                conn.execute(update(u).where(self.own(u.c.node_id), u.c.path == rel_path, u.c.state != UPLOADED)
                             .values(state="abandoned"))

    def set_size(self, rel_path: str, size: int) -> None:
        with self.db.begin() as conn:
            writes.set_size(conn, self.db, rel_path, size)

    def delete_all_rows(self) -> None:
        with self.db.begin() as conn:
            writes.delete_all(conn, self.db)

    def ping(self) -> None:
        """Raises when the database cannot be reached (outage handling: catalog/services.py)."""
        with self.db.read() as conn:
            conn.execute(text("SELECT 1"))
