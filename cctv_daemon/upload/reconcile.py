"""Every complete segment gets exactly one upload row, whichever path catalogued it (the finisher's bus event,
startup recovery of a file without a row, `check --repair`, `check --rebuild`): a full reconciliation at startup
(and every UPLOAD_RECONCILE_FULL_S) and an incremental one every UPLOAD_RECONCILE_PERIOD_S over the segments rows
newer than the last reconciled rowid. One SQL statement (segments LEFT JOIN uploads) each time.

Rows queued here carry ``check_remote``: before sending, the worker asks the bucket, and an object already there
with the same size is marked uploaded, not sent again (a rebuilt catalog does not re-upload the whole disk)."""

from __future__ import annotations

from pathlib import PurePosixPath

import structlog

from cctv_daemon.core.clock import Clock
from cctv_daemon.upload import queue as q
from cctv_daemon.upload.transfer import object_key

log = structlog.get_logger("cctv_daemon.upload")

# A segment row younger than this without an upload row is probably being queued by the bus right now.
FRESH_GRACE_S = 10.0
BATCH = 2000


class Reconciler:
    def __init__(self, queue: q.UploadQueue, prefix: str, clock: Clock) -> None:
        self.queue = queue
        self.prefix = prefix
        self.clock = clock
        self.last_rowid = 0
        self._last_path: str | None = None
        self.queued_total = 0
        self.runs = 0

    def run(self, full: bool = False) -> int:
        """Queue the complete segments lacking an upload row; returns how many were queued."""
        if not self.queue.has_segments_table():
            return 0
        top, top_path = self.queue.segments_mark()
        if not full and self.last_rowid and (top < self.last_rowid
                                             or self.queue.segment_path_at(self.last_rowid) != self._last_path):
            full = True  # the segments rows were replaced (check --rebuild): their rowids start again
            log.info("upload_reconcile_full", reason="segments rows replaced")
        after = 0 if full else self.last_rowid
        missing = self.queue.missing_uploads(after, top)
        now = self.clock.time()
        fresh = [m for m in missing if m.added_at > now - FRESH_GRACE_S]
        # Fresh rows are looked at again next time (the bus may be queueing them right now).
        upto = fresh[0].rowid - 1 if fresh else top
        upto_path = self.queue.segment_path_at(upto) if fresh else top_path
        chosen = [m for m in missing if m.rowid <= upto]
        rows = [(m.path, m.camera, m.start, m.size,
                 object_key(self.prefix, m.camera, m.start, PurePosixPath(m.path).name)) for m in chosen]
        queued = 0
        for i in range(0, len(rows), BATCH):  # short write transactions: the catalog's inserts never wait long
            queued += self.queue.enqueue_reconciled(rows[i:i + BATCH], now)
        self.last_rowid, self._last_path = upto, upto_path
        self.runs += 1
        if queued:
            self.queued_total += queued
            oldest = min(m.start for m in chosen)
            log.warning("uploads_reconciled", queued=queued, full=full, oldest_start=oldest,
                        hint="complete segments without an upload row (recovery, check --repair/--rebuild)")
        return queued
