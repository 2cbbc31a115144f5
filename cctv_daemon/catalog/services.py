"""The catalog, deletion and retention as one service the composition root (service/root.py) wires: it subscribes
the catalog insert (first) and retention to the bus, and recover() runs in Daemon.prepare() after the finisher's
recovery. Built from explicit arguments: nothing here knows the daemon.

A full disk never leaves a finished file without its row: when the insert fails with "disk is full", retention is
asked to make room (oldest footage first) and the insert is tried again.

A database outage (catalog.url on a server that went away) never stops recording nor loses a row: the segments
finished meanwhile are held in memory, in order (bounded: MAX_HELD; the files are on disk anyway, and startup
recovery catalogues what a crash lost), and a thread of ours retries with backoff until the database is back;
`status` shows the outage (catalog.database, heldRows).

A database server that cannot be reached when the daemon starts is the same outage from the first second
(docs/scale-out.md): the daemon records, holds the finished segments' rows, and when the database answers, the
retry thread migrates its schema, writes the held rows, then runs the startup recovery it had to skip. A server
that refuses us (wrong password, unknown database) is a config error at start instead (catalog/engine.py
is_refusal)."""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

import structlog

from cctv_daemon.catalog import labels
from cctv_daemon.catalog import recovery as catalog_recovery
from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.disk_space import SpaceReserve, is_disk_full
from cctv_daemon.catalog.engine import error_text, is_connection_error
from cctv_daemon.catalog.errors import CatalogError
from cctv_daemon.catalog.retention import Limits, Retention
from cctv_daemon.catalog.store import Catalog, default_node_id
from cctv_daemon.config.model import Config
from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import Clock
from cctv_daemon.core.events import FinishedSegment

log = structlog.get_logger("cctv_daemon.catalog")

INSERT_RETRY_FOR_S = 120.0  # a full disk that pruning cannot fix within this: the startup recovery catalogues it
ROOM_WAIT_S = 2.0
MAX_HELD = 50_000  # segments held through a database outage (about 6 days of one camera's 10 s segments)
RETRY_FIRST_S, RETRY_CAP_S = 0.5, 10.0


class CatalogServices:
    """Also a daemon component named "catalog": its status says when a damaged catalog was moved aside."""

    name = "catalog"

    def __init__(self, config: Config, clock: Clock, node_id: str | None = None) -> None:
        self.state_dir: Path = config.storageConfig.state_dir
        self.camera_names = [cam.cameraName for cam in config.cameras]
        self.catalog = Catalog.from_config(config, node_id if node_id is not None else default_node_id(), clock,
                                           wait_for_database=True)
        labels.ensure_table(self.catalog)
        self.deleter = SegmentDeleter(self.catalog, uploads_configured=config.s3Config is not None)
        self.retention = Retention(self.catalog, self.deleter, Limits.from_config(config), clock,
                                   reserve=SpaceReserve(self.state_dir),
                                   ack_file=self.state_dir / c.LOST_ACK_FILENAME)
        self.rebuilt: int | None = None  # rows the startup recovery rebuilt from the files after a move aside
        self._held: deque[FinishedSegment] = deque()  # finished during a database outage, oldest first
        self._held_lock = threading.Lock()
        self._held_wake = threading.Event()
        self._stopping = threading.Event()
        self._retry_thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self.db_error: str | None = None  # the outage's error (None: the database answers)
        self.dropped = 0  # segments not held (MAX_HELD reached): startup recovery / `check --repair` finds them
        self._recover_pending = False  # the startup recovery waits for the database (unreachable at start)
        self._refused: str | None = None  # the database came back but refuses us: logged once
        # Before the finisher's staging recovery adds the dead run's last segments: bounds the recovery scan.
        self._newest_at_open: dict[str, float] | None = None
        if self.catalog.waiting is not None:
            self.db_error = self.catalog.waiting
            log.error("catalog_database_unreachable_at_start", catalog=self.catalog.shown, error=self.db_error,
                      action="recording goes on; finished segments are held, the schema is migrated and they are "
                             "catalogued when the database answers")
        else:
            self._newest_at_open = self.catalog.newest_start()

    @property
    def waiting(self) -> str | None:
        """Why the catalog's schema is not there yet (its database has not answered since the start), else None."""
        return self.catalog.waiting

    def newest_end(self) -> dict[str, float]:
        """camera -> the newest end catalogued (the finisher's seed: names never overlap across runs); from the
        files on disk while the database has not answered since the start."""
        if self.catalog.waiting is None:
            return self.catalog.newest_end()
        return catalog_recovery.newest_end_on_disk(self.catalog.save_path, self.state_dir)

    def delete_segment(self, rel_path: str, reason: str) -> bool:
        return self.deleter.delete_segment(rel_path, reason)

    def add_segment(self, seg: FinishedSegment) -> None:
        """Bus subscriber (the first one, on the hand-off worker): the segment's row, also on a full disk, also
        through a database outage (held, then added in order when the database is back)."""
        with self._held_lock:
            # behind the ones already waiting (rows are added in the order segments finished), or no schema yet
            if self._held or self.catalog.waiting is not None:
                self._hold(seg)
                if self.catalog.waiting is not None:
                    self._ensure_retry_thread()
                return
        try:
            self._insert(seg)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            with self._held_lock:
                self._hold(seg)
            self._outage(exc)

    def _hold(self, seg: FinishedSegment) -> None:
        if len(self._held) >= MAX_HELD:
            self.dropped += 1
            log.error("catalog_row_not_held", path=seg.file, held=len(self._held),
                      action="the file stays; startup recovery or `check --repair` catalogues it")
            return
        self._held.append(seg)
        self._held_wake.set()

    def _outage(self, exc: BaseException) -> None:
        first = self.db_error is None
        self.db_error = error_text(exc, self.catalog.db.url)
        if first:
            log.error("catalog_database_unavailable", catalog=self.catalog.shown, error=self.db_error,
                      action="recording goes on; new segments are held and catalogued when it is back")
        self._ensure_retry_thread()

    def _ensure_retry_thread(self) -> None:
        with self._thread_lock:  # one retry thread at a time: two would add the same held row twice
            if self._stopping.is_set():
                return
            if self._retry_thread is None or not self._retry_thread.is_alive():
                self._retry_thread = threading.Thread(target=self._retry_loop, name="catalog-retry", daemon=True)
                self._retry_thread.start()

    def _retry_loop(self) -> None:
        delay = RETRY_FIRST_S
        while not self._stopping.is_set():
            if self.flush_held():
                return
            self._stopping.wait(delay)
            delay = min(RETRY_CAP_S, delay * 2)

    def flush_held(self) -> bool:
        """Add the held rows, oldest first; True when none is left (the database answers again). A catalog that
        has waited for its database since the start is migrated first, and its startup recovery runs after."""
        if self.catalog.waiting is not None:
            try:
                if not self.catalog.open_schema():
                    self.db_error = self.catalog.waiting
                    return False
            except CatalogError as exc:  # it answers, but refuses us or is newer than this program
                self.db_error = str(exc)
                if self._refused != self.db_error:
                    log.error("catalog_database_refuses", error=self.db_error,
                              action="segments stay held and on disk; fix catalog.url (or upgrade) and restart")
                self._refused = self.db_error
                return False
            self._newest_at_open = self.catalog.newest_start()  # before the held rows: the recovery scans from it
            log.info("catalog_schema_ready", catalog=self.catalog.shown)
        added = 0
        while True:
            with self._held_lock:
                if not self._held:
                    break
                seg = self._held[0]
            try:
                self._insert(seg)
            except Exception as exc:
                if is_connection_error(exc):
                    self.db_error = error_text(exc, self.catalog.db.url)
                    return False
                log.exception("catalog_held_row_failed", path=seg.file)
            with self._held_lock:
                self._held.popleft()
            added += 1
        if self.db_error is not None or added:
            log.warning("catalog_database_back", catalog=self.catalog.shown, rows_added=added)
        self.db_error = None
        if self._recover_pending:
            return self._late_recover()
        return True

    def _late_recover(self) -> bool:
        """The startup recovery skipped at start (the database was away), now that it answers."""
        try:
            added = catalog_recovery.startup_recover(self.catalog, self.deleter, self.state_dir, self.camera_names,
                                                     self._newest_at_open)
        except Exception as exc:
            if is_connection_error(exc):
                self.db_error = error_text(exc, self.catalog.db.url)
                return False
            log.exception("catalog_late_recovery_failed", action="`cctv-daemon check --repair` catalogues the files")
            added = 0
        self._recover_pending = False
        log.info("catalog_recovered_late", added=added)
        return True

    def _insert(self, seg: FinishedSegment) -> None:
        deadline = time.monotonic() + INSERT_RETRY_FOR_S
        attempt = 0
        while True:
            try:
                self.catalog.add_segment(seg)
                if attempt:
                    log.info("catalog_insert_after_disk_full", path=seg.file, attempts=attempt + 1)
                return
            except Exception as exc:
                if not is_disk_full(exc) or time.monotonic() > deadline:
                    raise
                attempt += 1
                if attempt == 1:
                    log.warning("catalog_insert_disk_full", path=seg.file, error=str(exc),
                                action="making room, then trying again")
                if not self.retention.wait_for_room(ROOM_WAIT_S):
                    time.sleep(0.2)

    def recover(self) -> None:
        """Startup recovery only: the first prune runs on retention's own thread once the daemon started, so a
        large one never delays readiness. Deferred while the database has not answered since the start."""
        if self.catalog.waiting is not None:
            self._recover_pending = True
            self._ensure_retry_thread()
            return
        added = catalog_recovery.startup_recover(self.catalog, self.deleter, self.state_dir, self.camera_names,
                                                 self._newest_at_open)
        if self.catalog.moved_aside is not None:
            self.rebuilt = added

    # -- component (service/daemon.py): nothing to run, a status to show ------------------------------------
    def start(self) -> None:
        pass

    def tick(self) -> None:
        if ((self._held or self.catalog.waiting is not None or self._recover_pending)
                and (self._retry_thread is None or not self._retry_thread.is_alive())):
            self._ensure_retry_thread()

    def stop(self) -> None:
        self._stopping.set()
        if self._retry_thread is not None:
            self._retry_thread.join(5)
        if self._held and not self.flush_held():
            log.error("catalog_rows_held_at_stop", count=len(self._held), error=self.db_error,
                      action="their files stay; the next start catalogues them (startup recovery)")

    def status(self) -> dict[str, object]:
        moved = self.catalog.moved_aside
        return {"movedAside": str(moved) if moved is not None else None,
                "movedAsideReason": self.catalog.moved_aside_reason,
                "rebuiltSegments": self.rebuilt,
                # a database server (catalog.url): where (password hidden), and an outage while it lasts
                "url": None if self.catalog.db.sqlite_path is not None else self.catalog.shown,
                "database": "UNAVAILABLE" if self.db_error else None, "databaseError": self.db_error,
                # not reached since the start: no schema yet (migrated when it answers), startup recovery pending
                "waitingForDatabase": self.catalog.waiting is not None or None,
                "heldRows": len(self._held) or None, "droppedRows": self.dropped or None}
