"""The durable upload queue: an upload's life in SQL (table ``uploads`` of the catalog database,
catalog.url: by default {state_dir}/catalog.sqlite3).

States: ``pending`` -> ``uploading`` -> ``uploaded``. A failed attempt sends the row back to ``pending`` with its
own ``next_attempt_at`` (per-object backoff), its ``last_error`` and, when the failure was the object's own (the
store otherwise works), ``failures`` + 1. After ``s3Config.maxAttempts`` such failures the row is ``failed``:
kept on disk, shown by ``status``, no longer tried until ``cctv-daemon uploads retry`` re-queues it. A permanent
store error (bad credentials, missing bucket) also leaves the row ``failed`` but without counting a failure, and
it is retried at the backoff cap. ``abandoned`` when the local file is gone before it was uploaded. Rows found
in ``uploading`` at startup belong to a killed run and go back to ``pending``. ``check_remote`` marks rows queued
by reconciliation: the bucket is asked first, and an object already there with the same size is not sent again.

Durability: on SQLite ``synchronous=FULL`` so that a queued row survives a power cut, not only a crash of the
process (one small transaction per segment; the cost is one fsync per segment, negligible next to writing it).
Every row carries this node's ``node_id``; the queue sees only its own node's rows (the node holds the files).

Test hook: ``CCTV_UPLOAD_QUEUE_FAULT=<method>:<count>`` makes the first ``count`` calls of that method raise
``sqlite3.OperationalError("database is locked (injected)")``. Never set in production.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, func, or_, select, true, update

from cctv_daemon.catalog import migrate
from cctv_daemon.catalog.engine import CatalogDb, open_sqlite
from cctv_daemon.upload.states import ABANDONED, FAILED, PENDING, RETRYING, SHOWN_STATES, UPLOADED, UPLOADING

__all__ = ["ABANDONED", "FAILED", "PENDING", "RETRYABLE", "RETRYING", "SHOWN_STATES", "UPLOADED", "UPLOADING",
           "WAITING", "UploadQueue",
           "UploadRow"]

FAULT_ENV = "CCTV_UPLOAD_QUEUE_FAULT"
_NO_LIMIT = 2**31 - 1  # "no max_attempts" (fits a 4-byte INTEGER parameter on every backend)

WAITING = (PENDING, FAILED)  # rows that still have to be uploaded
RETRYABLE = (PENDING, FAILED)  # what `uploads retry KEY` accepts


@dataclass(frozen=True)
class UploadRow:
    path: str  # relative to savePath, POSIX
    camera: str
    start: float
    size: int
    s3_key: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    etag: str | None
    sha256: str | None
    queued_at: float
    uploaded_at: float | None
    failures: int = 0
    check_remote: int = 0


@dataclass(frozen=True)
class MissingSegment:
    """A complete segment of the catalog without an upload row."""

    rowid: int  # segments.id
    path: str
    camera: str
    start: float
    size: int
    added_at: float


_FIELDS = tuple(UploadRow.__dataclass_fields__)


def shown_state(row: UploadRow, max_attempts: int) -> str:
    """The state a user is shown (`uploads list`), agreeing with `status`: ``failed`` only once given up
    (``max_attempts`` failures of its own); a row blocked by a store error (stored ``failed``, no failure
    counted) or backing off after a failed attempt is ``retrying``."""
    if row.state == FAILED:
        return FAILED if row.failures >= max_attempts else RETRYING
    if row.state == PENDING and row.last_error:
        return RETRYING
    return row.state


def _fault_from_env() -> tuple[str, int] | None:
    raw = os.environ.get(FAULT_ENV, "")
    name, _, count = raw.partition(":")
    if not name:
        return None
    try:
        return name, int(count or "1")
    except ValueError:
        return None


class UploadQueue:
    """Thread-safe (the database's lock); every method is one committed transaction. Opened on a catalog database
    (`CatalogDb`, shared with the catalog of the same process or its own), or on a SQLite file path."""

    def __init__(self, db: CatalogDb | Path, node_id: str | None = None) -> None:
        if isinstance(db, Path):
            from cctv_daemon.catalog.store import default_node_id

            db.parent.mkdir(parents=True, exist_ok=True)
            db = open_sqlite(db, node_id if node_id is not None else default_node_id(), "")
            migrate.upgrade(db)
        self.db = db
        self.db_path = db.shown
        self.migrated: list[str] = []  # columns are added by the catalog's migrations (catalog/migrate.py)
        fault = _fault_from_env()
        self._faults: dict[str, int] = {fault[0]: fault[1]} if fault else {}
        self.fault: Callable[[str], None] | None = None  # tests: called with the method name, may raise

    def close(self) -> None:
        self.db.close()

    def _check_fault(self, method: str) -> None:
        if self.fault is not None:
            self.fault(method)
        left = self._faults.get(method, 0)
        if left > 0:
            self._faults[method] = left - 1
            raise sqlite3.OperationalError(f"database is locked (injected fault in {method})")

    # -- building blocks ------------------------------------------------------------------------------------
    def _own(self) -> ColumnElement[bool]:
        u = self.db.t.uploads
        return u.c.node_id == self.db.node_id if self.db.scoped else true()

    def _sel(self) -> Select[Any]:
        u = self.db.t.uploads
        return select(*(u.c[f] for f in _FIELDS)).where(self._own())

    def _update(self, *where: ColumnElement[bool], **values: Any) -> int:
        u = self.db.t.uploads
        with self.db.begin() as conn:
            return int(conn.execute(update(u).where(self._own(), *where).values(**values)).rowcount)

    def _rows(self, stmt: Select[Any]) -> list[UploadRow]:
        with self.db.read() as conn:
            return [UploadRow(*r) for r in conn.execute(stmt).all()]

    def _insert(self, conn: Any, values: dict[str, Any]) -> int:
        """INSERT unless the path is queued already (same on every backend: look first, under the write lock)."""
        found, insert = self._insert_statements()
        if conn.execute(found, {"p": values["path"]}).first() is not None:
            return 0
        conn.execute(insert, {"node_id": self.db.node_id, **values})
        return 1

    def _insert_statements(self) -> tuple[Any, Any]:
        """Built once with bind parameters (building a Core statement per segment cost more than running it:
        ~0.3 ms of the hand-off's CPU, docs/benchmarks.md sixth pass); SQLAlchemy reuses their compiled form."""
        cached = self.db.cache.get("uploads_insert")
        if cached is None:
            u = self.db.t.uploads
            cached = self.db.cache["uploads_insert"] = (
                select(u.c.path).where(u.c.path == bindparam("p"), self._own()), u.insert())
        return cast("tuple[Any, Any]", cached)

    # -- queueing ---------------------------------------------------------------------------------------
    def enqueue(self, path: str, camera: str, start: float, size: int, s3_key: str, now: float) -> bool:
        """Queue a finished segment (committed when this returns); False when it was queued already."""
        self._check_fault("enqueue")
        with self.db.begin() as conn:
            return self._insert(conn, {"path": path, "camera": camera, "start": start, "size": size,
                                       "s3_key": s3_key, "state": PENDING, "queued_at": now}) == 1

    def recover(self) -> int:
        """Rows a killed run left in 'uploading' go back to 'pending' (their upload is redone)."""
        self._check_fault("recover")
        u = self.db.t.uploads
        return self._update(u.c.state == UPLOADING, state=PENDING)

    def claim(self, now: float, exclude: tuple[str, ...] = (), max_attempts: int | None = None) -> UploadRow | None:
        """The oldest waiting row that is due, marked 'uploading' (attempts + 1); None when there is none.
        With ``max_attempts``, 'failed' rows that used them up are not taken (only `uploads retry` does)."""
        self._check_fault("claim")
        u = self.db.t.uploads
        limit = _NO_LIMIT if max_attempts is None else max_attempts
        stmt = self._sel().where(or_(u.c.state == PENDING, and_(u.c.state == FAILED, u.c.failures < limit)),
                                 u.c.next_attempt_at <= now)
        if exclude:
            stmt = stmt.where(u.c.path.not_in(exclude))
        stmt = stmt.order_by(u.c.start, u.c.path).limit(1)
        if self.db.dialect != "sqlite":
            stmt = stmt.with_for_update(skip_locked=True)
        with self.db.begin() as conn:
            found = conn.execute(stmt).first()
            if found is None:
                return None
            row = UploadRow(*found)
            conn.execute(update(u).where(self._own(), u.c.path == row.path)
                         .values(state=UPLOADING, attempts=u.c.attempts + 1))
        return UploadRow(**{**row.__dict__, "state": UPLOADING, "attempts": row.attempts + 1})

    # -- outcomes -------------------------------------------------------------------------------------------
    def mark_uploaded(self, path: str, etag: str, sha256: str, now: float) -> None:
        self._check_fault("mark_uploaded")
        u = self.db.t.uploads
        self._update(u.c.path == path, state=UPLOADED, etag=etag, sha256=sha256, uploaded_at=now, last_error=None,
                     next_attempt_at=0, check_remote=0)

    def mark_failed(self, path: str, permanent: bool, error: str, next_attempt_at: float) -> None:
        """The store failed (not this object): back in the queue for later, no failure counted; 'failed' when
        the error is permanent. A row retention abandoned meanwhile stays abandoned."""
        self._check_fault("mark_failed")
        u = self.db.t.uploads
        self._update(u.c.path == path, u.c.state == UPLOADING, state=FAILED if permanent else PENDING,
                     last_error=error, next_attempt_at=next_attempt_at)

    def mark_object_failed(self, path: str, error: str, next_attempt_at: float, counted: bool,
                           give_up: bool) -> None:
        """This object failed: its own retry time and last error; ``counted`` adds one failure; ``give_up``
        makes it 'failed' (no more automatic attempts)."""
        self._check_fault("mark_object_failed")
        u = self.db.t.uploads
        self._update(u.c.path == path, u.c.state == UPLOADING, state=FAILED if give_up else PENDING,
                     last_error=error, next_attempt_at=next_attempt_at, failures=u.c.failures + int(counted))

    def release(self, path: str) -> None:
        """An upload cancelled by shutdown: pending again, not counted as an attempt."""
        self._check_fault("release")
        u = self.db.t.uploads
        self._update(u.c.path == path, u.c.state == UPLOADING, state=PENDING,
                     attempts=case((u.c.attempts > 0, u.c.attempts - 1), else_=0))

    def release_stranded(self, paths: Iterable[str]) -> int:
        """Rows a worker claimed and could not finish (an error outside the transfer): pending again."""
        self._check_fault("release_stranded")
        u = self.db.t.uploads
        return sum(self._update(u.c.path == path, u.c.state == UPLOADING, state=PENDING) for path in paths)

    def mark_abandoned(self, path: str, why: str) -> None:
        self._check_fault("mark_abandoned")
        u = self.db.t.uploads
        self._update(u.c.path == path, u.c.state.not_in((UPLOADED, ABANDONED)), state=ABANDONED, last_error=why)

    def make_due(self) -> int:
        """Every row waiting for the store (no failure of its own) becomes due now."""
        u = self.db.t.uploads
        return self._update(u.c.state.in_(WAITING), u.c.failures == 0, next_attempt_at=0)

    def retry(self, key: str | None) -> list[UploadRow]:
        """`uploads retry`: re-queue the row whose S3 key or path is ``key`` (pending or failed), or every
        'failed' row when ``key`` is None. Returns the rows re-queued. KeyError: no such row; ValueError: the
        row is in a state that cannot be retried."""
        u = self.db.t.uploads
        with self.db.begin() as conn:
            if key is None:
                where = u.c.state == FAILED
            else:
                where = or_(u.c.s3_key == key, u.c.path == key)
                found = conn.execute(select(u.c.state).where(self._own(), where)).all()
                if not found:
                    raise KeyError(key)
                bad = [str(s) for (s,) in found if s not in RETRYABLE]
                if bad:
                    raise ValueError(f"{key} is {bad[0]}, not failed or pending")
            rows = [UploadRow(*r) for r in conn.execute(self._sel().where(where).order_by(u.c.start, u.c.path))]
            conn.execute(update(u).where(self._own(), where).values(state=PENDING, failures=0, next_attempt_at=0))
        return rows

    # -- reconciliation (segments LEFT JOIN uploads) ------------------------------------------------------
    def has_segments_table(self) -> bool:
        return True  # part of the schema since the migrations

    def _own_segments(self) -> ColumnElement[bool]:
        s = self.db.t.segments
        return s.c.node_id == self.db.node_id if self.db.scoped else true()

    def segments_mark(self) -> tuple[int, str | None]:
        """(highest id of this node's segments, its path): where an incremental reconciliation stops."""
        s = self.db.t.segments
        with self.db.read() as conn:
            top = conn.execute(select(func.max(s.c.id)).where(self._own_segments())).scalar()
            if top is None:
                return 0, None
            path = conn.execute(select(s.c.path).where(s.c.id == top)).scalar()
        return int(top), None if path is None else str(path)

    def segment_path_at(self, rowid: int) -> str | None:
        s = self.db.t.segments
        with self.db.read() as conn:
            path = conn.execute(select(s.c.path).where(s.c.id == rowid)).scalar()
        return None if path is None else str(path)

    def segment_span(self, path: str) -> tuple[str, float, float] | None:
        """(feed_id, start, end) of the catalog row of an uploaded segment (for its SegmentUploaded event)."""
        s = self.db.t.segments
        with self.db.read() as conn:
            row = conn.execute(select(s.c.feed_id, s.c.start, s.c.end)
                               .where(self._own_segments(), s.c.path == path)).first()
        return None if row is None else (str(row[0]), float(row[1]), float(row[2]))

    def missing_uploads(self, after_rowid: int, up_to_rowid: int) -> list[MissingSegment]:
        """This node's complete segments with after < id <= up_to that have no upload row: one statement. On
        SQLite the state test is kept off the (state, start) index, so an incremental pass costs what it finds."""
        self._check_fault("missing_uploads")
        s, u = self.db.t.segments, self.db.t.uploads
        state = s.c.state.concat("") if self.db.dialect == "sqlite" else s.c.state
        stmt = (select(s.c.id, s.c.path, s.c.camera, s.c.start, s.c.size, s.c.added_at)
                .select_from(s.outerjoin(u, and_(u.c.path == s.c.path, u.c.node_id == s.c.node_id)))
                .where(self._own_segments(), s.c.id > after_rowid, s.c.id <= up_to_rowid, state == "complete",
                       u.c.path.is_(None))
                .order_by(s.c.id))
        with self.db.read() as conn:
            found = conn.execute(stmt).all()
        return [MissingSegment(int(r[0]), str(r[1]), str(r[2]), float(r[3]), int(r[4]), float(r[5]))
                for r in found]

    def enqueue_reconciled(self, rows: Iterable[tuple[str, str, float, int, str]], now: float) -> int:
        """Queue (path, camera, start, size, s3_key) rows found by reconciliation, flagged check_remote."""
        with self.db.begin() as conn:
            return sum(self._insert(conn, {"path": path, "camera": camera, "start": start, "size": size,
                                           "s3_key": key, "state": PENDING, "queued_at": now, "check_remote": 1})
                       for path, camera, start, size, key in rows)

    # -- reading ------------------------------------------------------------------------------------------
    def get(self, path: str) -> UploadRow | None:
        u = self.db.t.uploads
        rows = self._rows(self._sel().where(u.c.path == path))
        return rows[0] if rows else None

    def all(self, state: str | None = None) -> list[UploadRow]:
        u = self.db.t.uploads
        stmt = self._sel() if state is None else self._sel().where(u.c.state == state)
        return self._rows(stmt.order_by(u.c.start, u.c.path))

    def shown(self, state: str, max_attempts: int) -> list[UploadRow]:
        """The rows a user is shown in ``state`` (one of SHOWN_STATES, see shown_state), oldest first."""
        stored = {RETRYING: (PENDING, FAILED), PENDING: (PENDING,), FAILED: (FAILED,)}.get(state, (state,))
        u = self.db.t.uploads
        rows = self._rows(self._sel().where(u.c.state.in_(stored)).order_by(u.c.start, u.c.path))
        return [r for r in rows if shown_state(r, max_attempts) == state]

    def _waiting(self, max_attempts: int | None) -> ColumnElement[bool]:
        u = self.db.t.uploads
        limit = _NO_LIMIT if max_attempts is None else max_attempts
        return or_(u.c.state.in_((PENDING, UPLOADING)), and_(u.c.state == FAILED, u.c.failures < limit))

    def backlog(self, max_attempts: int | None = None) -> tuple[int, float | None]:
        """(rows still to upload incl. in flight, queued_at of the oldest of them); with ``max_attempts``,
        rows given up ('failed' with that many failures) are not counted."""
        u = self.db.t.uploads
        with self.db.read() as conn:
            count, oldest = conn.execute(select(func.count(), func.min(u.c.queued_at))
                                         .where(self._own(), self._waiting(max_attempts))).one()
        return int(count), None if oldest is None else float(oldest)

    def given_up(self, max_attempts: int) -> tuple[int, UploadRow | None, str | None]:
        """(count of rows given up, the oldest of them, the last error of the newest of them)."""
        u = self.db.t.uploads
        gave_up = and_(u.c.state == FAILED, u.c.failures >= max_attempts)
        with self.db.read() as conn:
            count = int(conn.execute(select(func.count()).where(self._own(), gave_up)).scalar_one())
            if not count:
                return 0, None, None
            oldest = conn.execute(self._sel().where(gave_up).order_by(u.c.start).limit(1)).one()
            newest = conn.execute(select(u.c.last_error).where(self._own(), gave_up)
                                  .order_by(u.c.start.desc()).limit(1)).scalar()
        return count, UploadRow(*oldest), None if newest is None else str(newest)
