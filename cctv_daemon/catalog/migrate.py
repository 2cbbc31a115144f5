"""Applying the catalog's schema migrations (Alembic scripts shipped in catalog/migrations/versions, run from code:
users need no alembic.ini). Under a database lock (PostgreSQL: an advisory lock; MySQL: GET_LOCK; SQLite: an
exclusive transaction), so nodes starting together migrate once. Never downgrades: a database whose revision this
program does not know (made by a newer one) is refused before anything is written.

Alembic itself (0.15-0.3 s to import and scan the scripts) is loaded only when the catalog is not already at
`HEAD`: a catalog at this program's revision is recognised by reading its version table directly, so a daemon
restart or a read command does not pay for the migration machinery."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Connection, exc, func, inspect, select, table, text

from cctv_daemon.catalog.engine import KEY, CatalogDb, error_text, open_server, parse_url
from cctv_daemon.catalog.errors import CatalogOpenError, SchemaError

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

log = structlog.get_logger("cctv_daemon.catalog")
logging.getLogger("alembic").setLevel(logging.WARNING)  # its own INFO lines; ours is catalog_migrated

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
HEAD = "0002"  # the newest revision in migrations/versions (tests/unit/test_catalog_backends.py checks it)
LOCK_WAIT_S = 120


def script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


def head() -> str:
    found = script().get_current_head()
    assert found is not None
    return found


def current(conn: Connection, db: CatalogDb) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    ctx = MigrationContext.configure(conn, opts={"version_table": db.t.version_table})
    return tuple(ctx.get_current_heads())


def at_head(conn: Connection, db: CatalogDb) -> bool:
    """Is the catalog at `HEAD`? Read from the version table as Alembic keeps it (one row per head), without
    Alembic. False also for anything unusual (no table, several heads, another revision): the caller then goes
    the full way through Alembic, which migrates or refuses."""
    version_table = db.t.version_table
    if not conn.dialect.has_table(conn, version_table):
        return False
    quoted = conn.dialect.identifier_preparer.quote(version_table)
    revs = conn.execute(text(f"SELECT version_num FROM {quoted}")).scalars().all()
    return tuple(revs) == (HEAD,)


def check_known(revs: tuple[str, ...], db: CatalogDb) -> None:
    scripts = script()
    for rev in revs:
        try:
            known = scripts.get_revision(rev) is not None
        except Exception:
            known = False
        if not known:
            raise SchemaError(f"{KEY}: the catalog at {db.shown} has schema revision {rev!r}, newer than this "
                              f"program knows (its newest is {head()!r}): upgrade cctv-daemon; nothing was written")


def is_current(db: CatalogDb) -> bool:
    """Read only: is the catalog at this program's revision? SchemaError when it is newer."""
    with db.read() as conn:
        if at_head(conn, db):
            return True
        revs = current(conn, db)
    check_known(revs, db)
    return revs == (head(),)


def _lock_name(db: CatalogDb) -> str:
    return f"cctv-daemon-migrate:{db.url.database}:{db.t.prefix}"[:64]


def upgrade(db: CatalogDb) -> tuple[tuple[str, ...], str]:
    """Bring the catalog to this program's revision. Returns (revisions before, revision now)."""
    with db.read() as conn:  # already there (every start but the first): no lock, no Alembic
        if at_head(conn, db):
            return (HEAD,), HEAD
    target = head()
    with db.lock, db.engine.connect() as conn:
        if db.dialect == "mysql":
            got = conn.execute(text("SELECT GET_LOCK(:n, :t)"), {"n": _lock_name(db), "t": LOCK_WAIT_S}).scalar()
            conn.commit()
            if got != 1:
                raise SchemaError(f"{KEY}: could not take the migration lock on {db.shown} within {LOCK_WAIT_S} s")
        try:
            if db.dialect == "sqlite":
                conn.info["begin_mode"] = "EXCLUSIVE"
            try:
                with conn.begin():
                    if db.dialect == "postgresql":
                        key = zlib.crc32(_lock_name(db).encode()) & 0x7FFFFFFF
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
                    before = current(conn, db)
                    check_known(before, db)
                    if before != (target,):
                        _run(conn, db, target)
            finally:
                conn.info.pop("begin_mode", None)
        finally:
            if db.dialect == "mysql":
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": _lock_name(db)})
                conn.commit()
    if before != (target,):
        log.info("catalog_migrated", catalog=db.shown, old=list(before) or None, new=target)
    return before, target


def _run(conn: Connection, db: CatalogDb, target: str) -> None:
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext

    scripts = script()
    cfg = Config()
    cfg.attributes.update(prefix=db.t.prefix, node_id=db.node_id)

    def fn(rev: object, _ctx: object) -> object:
        return scripts._upgrade_revs(target, rev)  # type: ignore[arg-type]

    with EnvironmentContext(cfg, scripts, fn=fn, destination_rev=target) as env:
        env.configure(connection=conn, version_table=db.t.version_table, transaction_per_migration=False)
        env.run_migrations()


def warn_if_prefix_hides_rows(db: CatalogDb) -> int:
    """`catalog.tablePrefix` set on a database whose catalog so far had no prefix (e.g. a SQLite file of an earlier
    install): the prefixed tables are new and empty, the old rows stay in the unprefixed `segments` table, unused.
    Nothing is moved (the old tables may belong to another fleet sharing the database): a clear warning names both.
    Returns the rows of the unprefixed table (0: nothing hidden)."""
    prefix = db.t.prefix
    if not prefix:
        return 0
    with db.read() as conn:
        names = set(inspect(conn).get_table_names())
        ours = "alembic_version" in names or "catalog_schema" in names  # not a table of the user's own
        if "segments" not in names or not ours:
            return 0
        old = int(conn.execute(select(func.count()).select_from(table("segments"))).scalar_one())
        new = int(conn.execute(select(func.count()).select_from(db.t.segments)).scalar_one())
    if old and not new:
        log.warning("catalog_prefix_hides_rows", catalog=db.shown, prefix=prefix, table="segments", rows=old,
                    action=f"catalog.tablePrefix {prefix!r} names new, empty tables; the {old} rows of the unprefixed "
                           "catalog are not used. Remove tablePrefix to use them (a SQLite catalog is single-node and "
                           "needs none), or keep it and rebuild from the files (`cctv-daemon check --rebuild`)")
    return old if not new else 0


def probe(url: str, prefix: str = "") -> None:
    """`check-config`: can the configured server catalog be reached, and is its schema one we know? Writes nothing.
    CatalogError (naming catalog.url) when not. A SQLite URL is checked when the daemon opens it."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return
    db = open_server(parsed, "", prefix, read_only=True)
    try:
        is_current(db)
    except exc.SQLAlchemyError as err:
        raise CatalogOpenError(f"{KEY}: cannot reach the catalog at {db.shown}: {error_text(err, parsed)}") from None
    finally:
        db.close()
