"""Uploads every finished segment to S3 exactly once: worker threads take the oldest due row of the durable
queue, upload it (multipart when large, bandwidth-limited when asked), verify it (size, ETag computed locally,
sha256) and only then mark it uploaded, publish ``SegmentUploaded`` and call ``on_uploaded`` (which may delete the
local file).

Failures: the store out of reach (network, timeouts) or a permanent error (missing bucket, bad credentials) is
the store's, not an object's: one shared backoff, one probe at a time, state ``retrying`` or ``error``. Any other
failure is the object's own: its own retry time (exponential per object), attempts and last error, so one bad
object never delays the others; after ``maxAttempts`` such failures (counted while the store otherwise works) it
is ``failed``: kept, listed by ``status``, re-queued by ``cctv-daemon uploads retry``. One log line per change of
state, never one per retry.

Supervision: an error outside the transfer (database locked, disk full...) is logged, the row it held goes back
to pending, and the worker comes back with backoff; ``status`` shows ``failing`` meanwhile. A housekeeping
thread reconciles the catalog with the queue (reconcile.py) and keeps the counts ``status`` shows, so the main
loop never waits on SQLite. Recording never waits for any of this: ``enqueue_segment`` is one SQL insert."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from cctv_daemon.config.model import Config, S3Config
from cctv_daemon.core import constants as c
from cctv_daemon.core.backoff import Backoff
from cctv_daemon.core.clock import Clock, SystemClock
from cctv_daemon.core.events import Event, FinishedSegment, SegmentUploaded
from cctv_daemon.core.redact import redact
from cctv_daemon.segments import names as segment_names
from cctv_daemon.upload import queue as q
from cctv_daemon.upload import report
from cctv_daemon.upload.errors import UploadCancelled, classify, unreachable
from cctv_daemon.upload.errors import VerificationFailed as VerificationFailed
from cctv_daemon.upload.reconcile import Reconciler
from cctv_daemon.upload.supervise import SupervisedThreads
from cctv_daemon.upload.transfer import MB as MB
from cctv_daemon.upload.transfer import Sender, Sent, TokenBucket, backoff_limits, object_key
from cctv_daemon.upload.transfer import file_digests as file_digests

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cctv_daemon.catalog.store import Catalog

__all__ = ["ERROR", "FAILING", "MB", "OK", "RETRYING", "TokenBucket", "Uploader", "classify", "file_digests",
           "object_key"]

log = structlog.get_logger("cctv_daemon.upload")

OK = "ok"
RETRYING = "retrying"
ERROR = "error"
FAILING = "failing"  # worker threads hit errors outside the transfer (database, disk)

RECONCILE_PERIOD_S = 5.0  # incremental reconciliation (and the status counts) this often
RECONCILE_FULL_S = 3600.0  # a full one this often (and at startup)
HOUSEKEEPING = "uploader-housekeeping"


class Uploader(SupervisedThreads):
    name = "uploader"

    def __init__(
        self,
        s3: S3Config,
        queue: q.UploadQueue,
        save_path: Path,
        client: S3Client,
        clock: Clock | None = None,
        on_uploaded: Callable[[str], None] | None = None,
        publish: Callable[[Event], None] | None = None,
        backoff: Backoff | None = None,
        chunk_mb: int = c.DEFAULT_MULTIPART_CHUNK_MB,
    ) -> None:
        self.s3 = s3
        self.queue = queue
        self.save_path = save_path
        self.client = client
        self.clock = clock or SystemClock()
        self.on_uploaded = on_uploaded
        self.publish = publish  # the event bus's publish (set by the composition root)
        self.backoff = backoff or Backoff(*backoff_limits())
        self.max_attempts = s3.maxAttempts
        self._cancel = threading.Event()
        self.bucket: TokenBucket | None = None
        if s3.bandwidthLimitMBps:
            self.bucket = TokenBucket(s3.bandwidthLimitMBps * MB, self.clock, sleep=self._cancel.wait)
        self.sender = Sender(s3, client, self._cancel, chunk_mb, self.bucket)
        self.threshold = self.sender.threshold
        self.chunk_bytes = self.sender.chunk_bytes
        self.transfer_config = self.sender.transfer_config
        self.reconciler = Reconciler(queue, s3.s3Path, self.clock)
        self._next_full_reconcile = 0.0
        self._rng = random.Random()
        self._wake = threading.Condition()
        SupervisedThreads.__init__(self, self._cancel)
        self._resume_at = 0.0  # monotonic: no new attempt before (the store failed: one shared backoff)
        self._in_flight = 0
        self._failed_since_success: set[str] = set()  # distinct objects failing since the last success
        self._counts: dict[str, Any] | None = None  # refreshed by the housekeeping thread
        self.state = OK
        self._state_code = ""
        self.last_error: str | None = None  # the current error: cleared by the next success
        self.last_error_at: float | None = None
        self.recovered: tuple[str, float, float] | None = None  # report.RECOVERED_FIELDS: the error a success cleared
        self.bytes_uploaded = 0
        self.uploads_done = 0
        self.already_in_bucket = 0
        self.given_up = 0
        # the catalog database has not answered since the start: no queue yet (the reconciler fills it later)
        self.catalog_waiting: Callable[[], bool] = lambda: False
        self._startup_pending = False

    @classmethod
    def from_config(
        cls, config: Config, save_path: Path, state_dir: Path, clock: Clock | None = None,
        catalog: Catalog | None = None,
    ) -> Uploader:
        from cctv_daemon.upload.s3_client import make_client

        assert config.s3Config is not None
        s3 = config.s3Config
        # its own connection(s) to the catalog's database: uploads never wait behind the catalog's lock
        if catalog is None:
            queue = q.UploadQueue(state_dir / c.CATALOG_FILENAME)
        elif catalog.db.sqlite_path is not None:
            queue = q.UploadQueue(catalog.db.sqlite_path, node_id=catalog.node_id)
        else:
            from cctv_daemon.catalog.engine import open_server

            queue = q.UploadQueue(open_server(catalog.db.url, catalog.node_id, catalog.prefix))
        client = make_client(s3, config.awsCredentials, s3.maxConcurrentUploads * c.UPLOAD_PART_CONCURRENCY)
        up = cls(s3, queue, save_path, client, clock)
        if catalog is not None:
            up.catalog_waiting = lambda: catalog.waiting is not None
        return up

    # -- bus subscriber (the segment-finisher thread) --------------------------------------------------
    def enqueue_segment(self, seg: FinishedSegment) -> None:
        if self.catalog_waiting():
            return  # no queue yet: the reconciler queues this segment once its row is catalogued
        rel = segment_names.rel_file(self.save_path, seg.file)  # no Path per segment: see core/events.py
        key = object_key(self.s3.s3Path, seg.camera, seg.start, rel.rsplit("/", 1)[-1])
        if self.queue.enqueue(rel, seg.camera, seg.start, seg.size, key, self.clock.time()):
            log.debug("upload_queued", camera=seg.camera, path=rel, key=key)
        with self._wake:
            self._wake.notify()

    # -- Component -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._startup_pending = self.catalog_waiting()
        count = None if self._startup_pending else self._recover_queue()
        log.info("uploader_started", bucket=self.s3.s3Bucket, prefix=self.s3.s3Path,
                 endpoint=self.s3.endpointUrl, workers=self.s3.maxConcurrentUploads, backlog=count,
                 max_attempts=self.max_attempts)
        for i in range(self.s3.maxConcurrentUploads):
            self._spawn(f"uploader-{i}", self.run_once, self._idle_wait, drains=True)
        self._spawn(HOUSEKEEPING, self._housekeeping_step, self._housekeeping_wait, drains=False)

    def _recover_queue(self) -> int:
        """Uploads a previous run left in flight go back to pending. Returns the backlog."""
        recovered = [r.path for r in self.queue.all(q.UPLOADING)]
        self.sender.recovered = set(recovered)
        if self.queue.recover():
            log.warning("uploads_interrupted_redone", count=len(recovered))
        if self.queue.migrated:
            log.info("upload_queue_migrated", columns=self.queue.migrated)
        count, _ = self.queue.backlog(self.max_attempts)
        return count

    def tick(self) -> None:
        self.restart_dead_threads()

    def stop(self) -> None:
        """Finish what can be finished within UPLOAD_STOP_GRACE_S, then cancel what is in flight (its row goes
        back to 'pending' and is uploaded again at the next start)."""
        self._draining = True
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + c.UPLOAD_STOP_GRACE_S
        workers = [t for t in self._threads if t.name != HOUSEKEEPING]
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
        self._cancel.set()
        deadline = time.monotonic() + c.UPLOAD_CANCEL_JOIN_S
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        try:
            released = self.queue.recover()
        except Exception as exc:
            released = 0
            log.error("upload_release_failed", error=redact(str(exc)), hint="redone at the next start")
        log.info("uploader_stopped", uploads_done=self.uploads_done, bytes=self.bytes_uploaded,
                 released=released, stuck_threads=stuck)

    def refresh_counts(self) -> dict[str, Any]:
        self._counts = counts = report.queue_counts(self.queue, self.max_attempts)
        return counts

    def retry(self, key: str | None) -> list[str]:
        """Re-queue one failed/pending upload (S3 key or path) or every failed one, and try at once: the keys
        re-queued. KeyError/ValueError as UploadQueue.retry."""
        rows = self.queue.retry(key)
        self._resume_at = 0.0
        return [r.s3_key for r in rows]

    def status(self) -> dict[str, Any]:
        """Never waits on SQLite once started: the counts come from the housekeeping thread."""
        counts = (self._counts if self._threads and self._counts is not None
                  else dict.fromkeys(report.COUNT_KEYS) if self._startup_pending else self.refresh_counts())
        failing = dict(self._failing)
        return report.uploader_status(self, FAILING if failing else self.state, counts, sorted(failing),
                                      alive=sum(t.is_alive() for t in self._threads), in_flight=self._in_flight)

    def _idle_wait(self) -> None:
        with self._wake:
            wait = c.UPLOAD_IDLE_WAIT_S
            if self._resume_at > self.clock.monotonic():
                wait = min(wait, self._resume_at - self.clock.monotonic())
            self._wake.wait(max(0.01, wait))

    def _housekeeping_step(self) -> bool:
        if self.catalog_waiting():
            return False
        if self._startup_pending:
            self._recover_queue()
            self._startup_pending = False
        now = self.clock.monotonic()
        full = now >= self._next_full_reconcile
        if self.reconciler.run(full=full):
            with self._wake:
                self._wake.notify_all()
        if full:
            self._next_full_reconcile = now + RECONCILE_FULL_S
        self.refresh_counts()
        return False

    def _housekeeping_wait(self) -> None:
        self._cancel.wait(RECONCILE_PERIOD_S)

    def release_stranded_rows(self, paths: set[str]) -> None:
        self.queue.release_stranded(paths)

    # -- one upload ------------------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Claim the oldest due row and upload it in this thread; False when nothing may be done now."""
        with self._lock:
            if self.clock.monotonic() < self._resume_at or self._startup_pending:
                return False
            if self.state != OK and self._in_flight > 0:
                return False  # while failing, one probe at a time
            row = self.queue.claim(self.clock.time(), max_attempts=self.max_attempts)
            if row is None:
                return False
            self._in_flight += 1
        try:
            self._run(row)
        except BaseException:
            with self._lock:
                self._stranded.add(row.path)  # pending again as soon as the queue answers
            raise
        finally:
            with self._lock:
                self._in_flight -= 1
        return True

    def _run(self, row: q.UploadRow) -> None:
        path = self.save_path / row.path
        try:
            sent = self._transfer(row, path)
        except UploadCancelled:
            self.queue.release(row.path)
            log.info("upload_cancelled", camera=row.camera, path=row.path, reason="shutdown")
            return
        except FileNotFoundError:
            self._abandon(row)
            return
        except Exception as exc:
            if not path.exists():
                self._abandon(row)
                return
            self._failed(row, exc)
            return
        self.queue.mark_uploaded(row.path, sent.etag, sent.sha256, self.clock.time())
        self._succeeded(row, sent)
        self._publish_uploaded(row, sent)
        if self.on_uploaded is not None:
            try:
                self.on_uploaded(row.path)
            except Exception:
                log.exception("on_uploaded_failed", camera=row.camera, path=row.path)

    def _publish_uploaded(self, row: q.UploadRow, sent: Sent) -> None:
        if self.publish is None:
            return
        try:
            feed_id, start, end = self.queue.segment_span(row.path) or ("", row.start, row.start)
        except Exception:
            log.exception("upload_event_failed", camera=row.camera, path=row.path)
            return
        self.publish(SegmentUploaded(row.camera, row.path, row.s3_key, self.clock.time(), feed_id, start, end,
                                     row.size, sent.already_there))

    def _transfer(self, row: q.UploadRow, path: Path) -> Sent:
        return self.sender.send(row, path)

    # -- outcomes --------------------------------------------------------------------------------------
    def _abandon(self, row: q.UploadRow) -> None:
        self.queue.mark_abandoned(row.path, "local file gone before upload")
        log.warning("upload_abandoned", camera=row.camera, path=row.path, reason="local file gone")

    def _succeeded(self, row: q.UploadRow, sent: Sent) -> None:
        with self._lock:
            if sent.already_there:
                self.already_in_bucket += 1
            else:
                self.uploads_done += 1
                self.bytes_uploaded += row.size
            self.backoff.reset()
            self._resume_at = 0.0
            self._failed_since_success.clear()
            recovering = self.state != OK
            if self.last_error is not None:  # a recovered uploader shows no stale error as current
                self.recovered = (self.last_error, self.last_error_at or 0.0, self.clock.time())
                self.last_error = self.last_error_at = None
        if recovering:
            self.queue.make_due()  # rows that only waited for the store: the backlog drains at full speed
        log.debug("uploaded", camera=row.camera, path=row.path, key=row.s3_key, etag=sent.etag,
                  attempts=row.attempts, already_there=sent.already_there)
        self._set_state(OK, "", "")
        with self._wake:
            self._wake.notify_all()

    def _failed(self, row: q.UploadRow, exc: BaseException) -> None:
        permanent, code, message = classify(exc)
        error = f"{code}: {message}"
        with self._lock:
            self.last_error, self.last_error_at = error, self.clock.time()
        if permanent or unreachable(exc):
            self._store_failed(row, permanent, code, message, error)
        else:
            self._object_failed(row, code, message, error)

    def object_delay(self, attempts: int) -> float:
        """One object's own backoff: exponential in its attempts, between the uploader's base and cap."""
        raw = float(min(self.backoff.cap, self.backoff.base * 2.0 ** max(0, attempts - 1)))
        spread = raw * self.backoff.jitter
        return max(0.0, raw + self._rng.uniform(-spread, spread))

    def _store_failed(self, row: q.UploadRow, permanent: bool, code: str, message: str, error: str) -> None:
        """Not this object's fault: one shared backoff (the store is one endpoint), no failure counted."""
        with self._lock:
            delay = self.backoff.next_delay(at_cap=permanent)
            self._resume_at = self.clock.monotonic() + delay
        self.queue.mark_failed(row.path, permanent, error, self.clock.time() + delay)
        log.debug("upload_attempt_failed", camera=row.camera, path=row.path, code=code,
                  retry_in_s=round(delay, 1), attempts=row.attempts)
        self._set_state(ERROR if permanent else RETRYING, code, message, retry_in_s=round(delay, 1),
                        camera=row.camera)

    def _object_failed(self, row: q.UploadRow, code: str, message: str, error: str) -> None:
        """The store answered but this object failed: its own backoff. The failure counts towards maxAttempts
        when no other object failed since the last success (else the store itself looks unwell)."""
        with self._lock:
            self._failed_since_success.add(row.path)
            alone = len(self._failed_since_success) == 1
        delay = self.object_delay(row.attempts)
        give_up = alone and row.failures + 1 >= self.max_attempts
        self.queue.mark_object_failed(row.path, error, self.clock.time() + delay, counted=alone,
                                      give_up=give_up)
        log.debug("upload_attempt_failed", camera=row.camera, path=row.path, code=code,
                  retry_in_s=round(delay, 1), attempts=row.attempts, failures=row.failures + int(alone))
        if give_up:
            with self._lock:
                self.given_up += 1
            log.error("upload_failed", camera=row.camera, path=row.path, key=row.s3_key, error=error,
                      failures=row.failures + 1, kept=True,
                      hint="kept on disk; `cctv-daemon uploads retry KEY` (or --all) queues it again")
        elif not alone:
            self._set_state(RETRYING, code, message, camera=row.camera)

    def _set_state(self, state: str, code: str, message: str, **fields: Any) -> None:
        """One log line per change of (state, error code); none per retry."""
        with self._lock:
            if (state, code) == (self.state, self._state_code):
                return
            previous = self.state
            self.state, self._state_code = state, code
        if state == OK:
            log.info("upload_recovered", previous=previous)
        elif state == RETRYING:
            log.warning("upload_retrying", code=code, error=message, previous=previous, **fields)
        else:
            log.error("upload_error", code=code, error=message, previous=previous, bucket=self.s3.s3Bucket,
                      hint="fix the bucket/credentials; retried every backoff cap", **fields)

