"""The segment catalog: an embedded SQLite database (WAL) at {stateDir}/catalog.sqlite3 with one row per
finished segment (table `segments`, owned here); upload facts live in `uploads` (owned by upload_queue.py) and
are LEFT JOINed when that table exists. See docs/segment-lifecycle.md for when rows change."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import structlog

from cctv_daemon.catalog import sqlite_db
from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import Clock, SystemClock
from cctv_daemon.core.crash_hook import crash_point
from cctv_daemon.core.events import FinishedSegment

log = structlog.get_logger("cctv_daemon.catalog")

SCHEMA_VERSION = 1
LIVE_STATES = ("complete", "deleting")  # the file exists (or is about to go)
STATES = ("complete", "deleting", "deleted", "missing")

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS segments (
    path TEXT PRIMARY KEY,            -- relative to savePath, POSIX
    camera TEXT NOT NULL,
    feed_id TEXT NOT NULL,
    start REAL NOT NULL,              -- UTC epoch seconds
    "end" REAL NOT NULL,
    duration REAL NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('complete', 'deleting', 'deleted', 'missing')),
    run_id TEXT,
    recovered INTEGER NOT NULL DEFAULT 0,
    added_at REAL NOT NULL,
    state_at REAL NOT NULL,           -- when the state last changed
    reason TEXT                       -- why deleted / missing
);
CREATE INDEX IF NOT EXISTS segments_camera_start ON segments (camera, start);
CREATE INDEX IF NOT EXISTS segments_state_start ON segments (state, start);
CREATE TABLE IF NOT EXISTS segment_totals (
    camera TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS segments_ins AFTER INSERT ON segments
WHEN NEW.state IN ('complete', 'deleting') BEGIN
    INSERT INTO segment_totals (camera, count, bytes) VALUES (NEW.camera, 1, NEW.size)
    ON CONFLICT (camera) DO UPDATE SET count = count + 1, bytes = bytes + NEW.size;
END;
CREATE TRIGGER IF NOT EXISTS segments_del AFTER DELETE ON segments
WHEN OLD.state IN ('complete', 'deleting') BEGIN
    UPDATE segment_totals SET count = count - 1, bytes = bytes - OLD.size WHERE camera = OLD.camera;
END;
CREATE TRIGGER IF NOT EXISTS segments_upd_old AFTER UPDATE OF state, size, camera ON segments
WHEN OLD.state IN ('complete', 'deleting') BEGIN
    UPDATE segment_totals SET count = count - 1, bytes = bytes - OLD.size WHERE camera = OLD.camera;
END;
CREATE TRIGGER IF NOT EXISTS segments_upd_new AFTER UPDATE OF state, size, camera ON segments
WHEN NEW.state IN ('complete', 'deleting') BEGIN
    INSERT INTO segment_totals (camera, count, bytes) VALUES (NEW.camera, 1, NEW.size)
    ON CONFLICT (camera) DO UPDATE SET count = count + 1, bytes = bytes + NEW.size;
END;
"""


UPLOADED = "uploaded"  # the uploads-table state of a verified off-site copy (upload/queue.py)


def is_uploaded(upload_state: str | None) -> bool:
    """The one question others ask of upload state: is a verified copy off-site? (None: no uploads row.)"""
    return upload_state == UPLOADED


class SegmentRow(NamedTuple):  # a NamedTuple: 100 000 of them are built in well under a second
    path: str  # relative, POSIX
    camera: str
    feed_id: str
    start: float
    end: float
    size: int
    state: str = "complete"
    upload_state: str | None = None  # from the uploads table, when it exists
    media_duration: float | None = None  # seconds of media by the camera's clock (None: unknown, e.g. rebuilt)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Gap:
    camera: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


GAP_TOLERANCE_S = 1.5  # segments that touch within this are contiguous


def db_path(state_dir: Path) -> Path:
    return state_dir / c.CATALOG_FILENAME


class Catalog:
    """Thread-safe (one connection, one lock). Opening creates or migrates the schema; a catalog that is corrupt or
    cannot be opened is moved aside (never deleted) and a new one is made, which startup recovery rebuilds from the
    files (catalog/recovery.py), so recording never waits on the catalog. With read_only (the read commands:
    `segments`, `export`, `check` without repairs) nothing is ever written or created: a missing catalog reads as an
    empty one."""

    def __init__(self, path: Path, save_path: Path, clock: Clock | None = None, *, read_only: bool = False) -> None:
        self.path = path
        self.save_path = save_path
        self.clock = clock or SystemClock()
        self.read_only = read_only
        self.moved_aside: Path | None = None  # where a damaged catalog went, when one was found at opening
        self.moved_aside_reason: str | None = None
        self._lock = threading.RLock()
        self.created = not path.exists()
        if read_only:
            self._db = sqlite_db.connect_read_only(path) if not self.created else sqlite_db.connect_memory()
            if self.created:
                self._migrate()
            else:
                self._check_version()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open_and_verify()
        except sqlite3.DatabaseError as exc:
            if not sqlite_db.is_damage(exc, path):
                raise
            self._move_aside(exc)
            self._db = self._open_and_verify()

    @classmethod
    def for_state_dir(cls, state_dir: Path, save_path: Path, clock: Clock | None = None, *,
                      read_only: bool = False) -> Catalog:
        return cls(db_path(state_dir), save_path, clock, read_only=read_only)

    # -- opening ----------------------------------------------------------------------------------------
    def _open_and_verify(self) -> sqlite3.Connection:
        db = sqlite_db.connect(self.path, synchronous="FULL")  # see docs/segment-lifecycle.md
        try:
            self._db = db
            self._migrate()
            result = str(db.execute("PRAGMA quick_check(1)").fetchone()[0])
            if result.lower() != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {result}")
            db.execute("PRAGMA user_version = 0")  # a write: a file we cannot write is as bad as a corrupt one
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, exc: BaseException) -> None:
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
        self.moved_aside, self.moved_aside_reason = dest, f"{type(exc).__name__}: {exc}"
        self.created = True
        log.error("catalog_moved_aside", path=str(self.path), moved_to=str(dest), reason=self.moved_aside_reason,
                  action="a new catalog is rebuilt from the files; recording goes on")

    def _check_version(self) -> None:
        row = self._db.execute("SELECT MAX(version) FROM catalog_schema").fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"catalog {self.path} has schema {version}, newer than this program's "
                               f"{SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- schema ---------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        if self.read_only and not self.created:
            return
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS catalog_schema (version INTEGER NOT NULL)")
            row = self._db.execute("SELECT MAX(version) FROM catalog_schema").fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"catalog {self.path} has schema {version}, newer than this program's "
                                   f"{SCHEMA_VERSION}")
            if version < 1:  # every statement is idempotent, so two processes migrating at once is harmless
                self._db.executescript(
                    "BEGIN IMMEDIATE;" + _SCHEMA_V1 + "DELETE FROM catalog_schema;"
                    f"INSERT INTO catalog_schema (version) VALUES ({SCHEMA_VERSION}); COMMIT;")
                log.info("catalog_schema", path=str(self.path), old=version, new=SCHEMA_VERSION)
            # Added in place (no version bump: idempotent, a column check): the media duration of a segment,
            # which differs from its wall duration (end - start) when the camera's clock drifts or jumps.
            cols = {str(r[1]) for r in self._db.execute("PRAGMA table_info(segments)").fetchall()}
            if "media_duration" not in cols:
                self._db.execute("ALTER TABLE segments ADD COLUMN media_duration REAL")
                log.info("catalog_column_added", path=str(self.path), column="media_duration")
            # MAX(duration) bounds every range query (segments()): without this index it scans the whole table
            # (15 ms at 100 000 rows, each time; docs/benchmarks.md "HTTP API"). Idempotent, so also for old files.
            self._db.execute("CREATE INDEX IF NOT EXISTS segments_duration ON segments (duration)")
            # future migrations: if version < 2: ...

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: Iterable[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._db.execute(sql, tuple(params)).fetchall())

    def has_uploads_table(self) -> bool:
        return bool(self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'uploads'"))

    # -- paths ----------------------------------------------------------------------------------------
    def rel(self, path: Path) -> str:
        return PurePosixPath(*path.relative_to(self.save_path).parts).as_posix()

    def abs(self, rel_path: str) -> Path:
        return self.save_path.joinpath(*PurePosixPath(rel_path).parts)

    # -- writes ---------------------------------------------------------------------------------------
    def add_segment(self, seg: FinishedSegment) -> None:
        """Bus subscriber (first one): catalogue a finished segment. Idempotent."""
        crash_point("catalog.before_insert")
        row = SegmentRow(self.rel(seg.path), seg.camera, seg.feed_id, seg.start, seg.end, seg.size,
                         media_duration=seg.media_duration)
        self.add_rows([row], run_id=seg.run_id, recovered=seg.recovered)

    def add_rows(self, rows: Iterable[SegmentRow], run_id: str | None = None, recovered: bool = False) -> int:
        """Insert rows (state 'complete'); an existing live row is kept, a 'deleted'/'missing' row whose file
        is back is revived. Returns how many rows were added or revived."""
        now = self.clock.time()
        n = 0
        with self.transaction() as db:
            for r in rows:
                cur = db.execute(
                    'INSERT INTO segments (path, camera, feed_id, start, "end", duration, size, state,'
                    " run_id, recovered, added_at, state_at, media_duration)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'complete', ?, ?, ?, ?, ?)"
                    " ON CONFLICT (path) DO UPDATE SET state = 'complete', size = excluded.size,"
                    " state_at = excluded.state_at, reason = NULL WHERE state IN ('deleted', 'missing')",
                    (r.path, r.camera, r.feed_id, r.start, r.end, r.end - r.start, r.size, run_id,
                     int(recovered), now, now, r.media_duration),
                )
                n += cur.rowcount
        return n

    def set_state(self, rel_path: str, state: str, reason: str | None = None,
                  abandon_upload: bool = False) -> None:
        assert state in STATES
        with self.transaction() as db:
            db.execute("UPDATE segments SET state = ?, state_at = ?, reason = COALESCE(?, reason)"
                       " WHERE path = ?", (state, self.clock.time(), reason, rel_path))
            if abandon_upload and self._uploads_exists(db):
                db.execute("UPDATE uploads SET state = 'abandoned' WHERE path = ? AND state != 'uploaded'",
                           (rel_path,))

    def set_size(self, rel_path: str, size: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE segments SET size = ? WHERE path = ?", (size, rel_path))

    def delete_all_rows(self) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM segments")
            db.execute("DELETE FROM segment_totals")

    @staticmethod
    def _uploads_exists(db: sqlite3.Connection) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'uploads'"
        return db.execute(sql).fetchone() is not None

    # -- reads ----------------------------------------------------------------------------------------
    def get(self, rel_path: str) -> SegmentRow | None:
        rows = self._select("WHERE s.path = ?", (rel_path,), states=STATES)
        return rows[0] if rows else None

    def get_live(self, rel_path: str) -> SegmentRow | None:
        row = self.get(rel_path)
        return row if row is not None and row.state in ("complete", "deleting") else None

    def segments(self, camera: str | None = None, start: float | None = None, end: float | None = None,
                 states: tuple[str, ...] = ("complete",)) -> list[SegmentRow]:
        """Segments overlapping [start, end), ordered by camera then start."""
        where: list[str] = []
        params: list[object] = []
        if camera is not None:
            where.append("s.camera = ?")
            params.append(camera)
        if end is not None:
            where.append("s.start < ?")
            params.append(end)
        if start is not None:
            # Bounded scan of the (camera, start) index: nothing starts earlier than start - longest segment.
            longest = float(str(self.query("SELECT COALESCE(MAX(duration), 0) FROM segments")[0][0]))
            where.append("s.start >= ? AND s.\"end\" > ?")
            params += [start - longest - 1, start]
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(clause, params, states, order="ORDER BY s.camera, s.start")

    def _select(self, clause: str, params: Iterable[object], states: tuple[str, ...],
                order: str = "", limit: int | None = None) -> list[SegmentRow]:
        state_sql = f"s.state IN ({','.join('?' * len(states))})"
        clause = (clause + " AND " + state_sql) if clause else "WHERE " + state_sql
        params = [*params, *states]
        with self._lock:
            uploads = self._uploads_exists(self._db)
            join = "LEFT JOIN uploads u ON u.path = s.path" if uploads else ""
            up = "u.state" if uploads else "NULL"
            sql = (f'SELECT s.path, s.camera, s.feed_id, s.start, s."end", s.size, s.state, {up}, '
                   "s.media_duration "
                   f"FROM segments s {join} {clause} {order}" + (f" LIMIT {int(limit)}" if limit else ""))
            rows = self._db.execute(sql, params).fetchall()
        make = SegmentRow._make
        return [make(r) for r in rows]

    def oldest(self, camera: str | None = None, uploaded: bool | None = None, limit: int = 100,
               before: float | None = None) -> list[SegmentRow]:
        """Deletion candidates: complete segments, oldest first; `uploaded` True = only those whose upload is
        verified, False = only the others, None = all."""
        where: list[str] = []
        params: list[object] = []
        if camera is not None:
            where.append("s.camera = ?")
            params.append(camera)
        if before is not None:
            where.append('s."end" <= ?')
            params.append(before)
        if uploaded is not None:
            if not self.has_uploads_table():
                if uploaded:
                    return []
            else:
                where.append(f"u.state = '{UPLOADED}'" if uploaded
                             else f"(u.state IS NULL OR u.state != '{UPLOADED}')")
        if self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'recordings'"):
            # a recording marked keep (catalog/labels.py) protects its segments from deletion candidates
            where.append('NOT EXISTS (SELECT 1 FROM recordings r WHERE r.keep = 1 AND r.camera = s.camera'
                         ' AND r.start < s."end" AND r."end" > s.start)')
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(clause, params, ("complete",), order="ORDER BY s.start", limit=limit)

    def totals(self) -> dict[str, tuple[int, int]]:
        """camera -> (segments, bytes) of live segments (kept by triggers; O(cameras))."""
        return {str(cam): (int(str(n)), int(str(b))) for cam, n, b in
                self.query("SELECT camera, count, bytes FROM segment_totals WHERE count > 0")}

    def total_bytes(self) -> int:
        return sum(b for _n, b in self.totals().values())

    def not_uploaded(self) -> tuple[int, int]:
        """(segments, bytes) of complete segments without a verified upload (a full scan: not for the main loop)."""
        if not self.has_uploads_table():
            n, b = self.query("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM segments WHERE state = 'complete'")[0]
            return int(str(n)), int(str(b))
        n, b = self.query("SELECT COUNT(*), COALESCE(SUM(s.size), 0) FROM segments s LEFT JOIN uploads u"
                          f" ON u.path = s.path WHERE s.state = 'complete' AND (u.state IS NULL OR"
                          f" u.state != '{UPLOADED}')")[0]
        return int(str(n)), int(str(b))

    def newest_start(self) -> dict[str, float]:
        return {str(cam): float(str(s)) for cam, s in
                self.query("SELECT camera, MAX(start) FROM segments GROUP BY camera")}

    def newest_end(self) -> dict[str, float]:
        """camera -> the latest end of any of its segments (no new segment may start before it)."""
        return {str(cam): float(str(e)) for cam, e in
                self.query('SELECT camera, MAX("end") FROM segments GROUP BY camera')}

    def rows_in_state(self, state: str) -> list[tuple[str, float]]:
        return [(str(p), float(str(t))) for p, t in
                self.query("SELECT path, state_at FROM segments WHERE state = ?", (state,))]

    def live_sizes(self) -> dict[str, int]:
        return {str(p): int(str(s)) for p, s in
                self.query("SELECT path, size FROM segments WHERE state IN ('complete', 'deleting')")}


def with_gaps(rows: list[SegmentRow], start: float | None = None, end: float | None = None,
              tolerance: float = GAP_TOLERANCE_S) -> list[Gap]:
    """Missing coverage between segments of each camera (rows ordered by camera, start); with a range, also
    before the first and after the last segment inside it. Touching within `tolerance` is not a gap."""
    gaps: list[Gap] = []
    by_cam: dict[str, list[SegmentRow]] = {}
    for r in rows:
        by_cam.setdefault(r.camera, []).append(r)
    for cam, segs in by_cam.items():
        covered = start if start is not None else segs[0].start
        for s in segs:
            if s.start - covered > tolerance:
                gaps.append(Gap(cam, covered, s.start))
            covered = max(covered, s.end)
        if end is not None and end - covered > tolerance:
            gaps.append(Gap(cam, covered, end))
    return gaps
