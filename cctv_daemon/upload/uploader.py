"""Uploads every finished segment to S3 exactly once: worker threads take the oldest due row of the durable
queue, upload it (multipart when large, bandwidth-limited when asked), verify it (size, ETag computed locally,
sha256) and only then mark it uploaded and call ``on_uploaded`` (which may delete the local file).

Failures: transient ones (network, 5xx, throttling, timeouts) are retried with exponential backoff and
jitter without limit; permanent ones (missing bucket, bad credentials, access denied) put the uploader in the
``error`` state and are retried at the backoff cap. One log line per change of state, never one per retry.
Recording never waits for any of this: ``enqueue_segment`` is one SQL insert, ``tick`` never blocks."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import structlog
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from s3transfer.utils import ChunksizeAdjuster

from cctv_daemon.config.model import Config, S3Config
from cctv_daemon.core import constants as c
from cctv_daemon.core.backoff import Backoff
from cctv_daemon.core.clock import Clock, SystemClock
from cctv_daemon.core.events import FinishedSegment
from cctv_daemon.core.redact import redact
from cctv_daemon.upload import queue as q

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = structlog.get_logger("cctv_daemon.upload")

OK = "ok"
RETRYING = "retrying"
ERROR = "error"

MB = 1024 * 1024

# Errors an operator has to fix; retried only at the backoff cap.
PERMANENT_CODES = frozenset({
    "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
    "InvalidBucketName", "AccountProblem", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed",
    "NoCredentials", "PartialCredentials", "InvalidStorageClass", "KMS.NotFoundException",
    "KMS.DisabledException", "403",
})  # fmt: skip
# 4xx statuses that are not the operator's problem.
TRANSIENT_4XX = frozenset({400, 404, 408, 409, 423, 429, 499})
TRANSIENT_CODES = frozenset({
    "RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "Throttling", "ThrottlingException",
    "RequestLimitExceeded", "TooManyRequests", "InternalError", "ServiceUnavailable", "BadDigest",
    "IncompleteBody", "RequestTimeoutException", "OperationAborted",
})  # fmt: skip
_CODE_IN_TEXT = re.compile(r"An error occurred \(([A-Za-z0-9.]+)\)")


# -- pure helpers -----------------------------------------------------------------------------------------
def object_key(prefix: str, camera: str, start: float, file_name: str) -> str:
    """``{s3Path}/{camera}/{YYYY}/{MM}/{DD}/{file name}`` with the UTC date of the segment start (rounded to
    the second like the file's own date folder); no leading slash when the prefix is empty."""
    day = datetime.fromtimestamp(round(start), tz=timezone.utc)
    parts = [prefix.strip("/"), camera, f"{day:%Y}", f"{day:%m}", f"{day:%d}", file_name]
    return "/".join(p for p in parts if p)


def part_size(size: int, chunk_bytes: int) -> int:
    """The part size s3transfer will really use for a file of ``size`` bytes (it adjusts for S3's limits)."""
    return int(ChunksizeAdjuster().adjust_chunksize(chunk_bytes, size))


def file_digests(path: Path, size: int, threshold: int, chunk_bytes: int) -> tuple[str, str]:
    """(expected ETag, sha256 hex) of a file, in one pass: MD5 for a single PUT; for a multipart upload
    MD5 of the concatenated part MD5s + ``-N``. Not valid for SSE-KMS/SSE-C objects (ETag is not an MD5)."""
    multipart = size >= threshold
    step = part_size(size, chunk_bytes) if multipart else 4 * MB
    sha = hashlib.sha256()
    whole = hashlib.md5(usedforsecurity=False)
    part_md5s: list[bytes] = []
    with path.open("rb") as f:
        while chunk := f.read(step):
            sha.update(chunk)
            if multipart:
                part_md5s.append(hashlib.md5(chunk, usedforsecurity=False).digest())
            else:
                whole.update(chunk)
    if multipart:
        etag = f"{hashlib.md5(b''.join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"
    else:
        etag = whole.hexdigest()
    return etag, sha.hexdigest()


class VerificationFailed(Exception):
    """The store reports a different size or checksum than the local file has."""


class UploadCancelled(Exception):
    """Raised from the progress callback to abort an upload (shutdown). Not an OSError on purpose, so that
    neither urllib3 nor botocore take it for a network error and retry."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def classify(exc: BaseException) -> tuple[bool, str, str]:
    """(permanent?, error code, redacted message) of an upload failure."""
    message = redact(str(exc) or type(exc).__name__)
    for e in _chain(exc):
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code") or "Unknown")
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in PERMANENT_CODES:
                return True, code, redact(str(e))
            if code in TRANSIENT_CODES or status >= 500 or status in TRANSIENT_4XX or status == 0:
                return False, code, redact(str(e))
            return 400 <= status < 500, code, redact(str(e))
        if isinstance(e, NoCredentialsError):
            return True, "NoCredentials", message
        if isinstance(e, PartialCredentialsError):
            return True, "PartialCredentials", message
    found = _CODE_IN_TEXT.search(str(exc))
    if found:  # boto3's S3UploadFailedError keeps only the text of the ClientError
        code = found[1]
        return code in PERMANENT_CODES, code, message
    if isinstance(exc, VerificationFailed):
        return False, "VerificationFailed", message
    if isinstance(exc, BotoCoreError | OSError):
        return False, type(exc).__name__, message
    return False, type(exc).__name__, message


class TokenBucket:
    """Shared bandwidth limit: every sent byte costs a token; a sender in debt sleeps it off."""

    def __init__(self, rate_bytes_s: float, clock: Clock, sleep: Callable[[float], Any] = time.sleep) -> None:
        self.rate = rate_bytes_s
        self.capacity = max(1024.0, rate_bytes_s * 0.2)  # a small burst: the limit holds from the start
        self.tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock.monotonic()
        self._lock = threading.Lock()

    def consume(self, n: int) -> float:
        """Take ``n`` tokens; sleeps (through ``sleep``) as long as needed. Returns the seconds waited."""
        if n <= 0:
            return 0.0
        with self._lock:
            now = self._clock.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
            self._last = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class ThrottledReader:
    """The file as boto3 reads it: the bandwidth limit and the cancel point of an upload.

    s3transfer's progress callbacks are aggregated (256 kB) and only fire after bytes were sent, so the limit
    sits on ``read``. Each byte is charged once (up to the highest offset read): botocore may read a body
    before sending it (payload hash over plain http) and rewind, which must not halve the rate."""

    def __init__(self, raw: BinaryIO, bucket: TokenBucket | None, cancel: threading.Event) -> None:
        self._raw = raw
        self._bucket = bucket
        self._cancel = cancel
        self._charged = 0

    def read(self, size: int = -1) -> bytes:
        if self._cancel.is_set():
            raise UploadCancelled
        data = self._raw.read(size)
        end = self._raw.tell()
        if self._bucket is not None and end > self._charged:
            self._bucket.consume(end - self._charged)
            self._charged = end
            if self._cancel.is_set():
                raise UploadCancelled
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """The caller owns the file."""


def backoff_limits() -> tuple[float, float]:
    """The upload backoff (base, cap); ``CCTV_UPLOAD_BACKOFF_S="BASE,CAP"`` overrides them (tests, tuning)."""
    raw = os.environ.get(c.UPLOAD_BACKOFF_ENV, "")
    try:
        base, cap = (float(x) for x in raw.split(","))
        if 0 < base <= cap:
            return base, cap
    except ValueError:
        pass
    return c.UPLOAD_BACKOFF_BASE_S, c.UPLOAD_BACKOFF_CAP_S


# -- the component ------------------------------------------------------------------------------------------
class Uploader:
    def __init__(
        self,
        s3: S3Config,
        queue: q.UploadQueue,
        save_path: Path,
        client: S3Client,
        clock: Clock | None = None,
        on_uploaded: Callable[[str], None] | None = None,
        backoff: Backoff | None = None,
        chunk_mb: int = c.DEFAULT_MULTIPART_CHUNK_MB,
    ) -> None:
        self.s3 = s3
        self.queue = queue
        self.save_path = save_path
        self.client = client
        self.clock = clock or SystemClock()
        self.on_uploaded = on_uploaded
        self.backoff = backoff or Backoff(*backoff_limits())
        self.threshold = s3.multipartThresholdMB * MB
        self.chunk_bytes = chunk_mb * MB
        self.transfer_config = TransferConfig(
            multipart_threshold=self.threshold,
            multipart_chunksize=self.chunk_bytes,
            max_concurrency=c.UPLOAD_PART_CONCURRENCY,
            preferred_transfer_client="classic",  # the CRT client picks its own part size: ETag unknowable
        )
        self._cancel = threading.Event()
        self.bucket: TokenBucket | None = None
        if s3.bandwidthLimitMBps:
            self.bucket = TokenBucket(s3.bandwidthLimitMBps * MB, self.clock, sleep=self._cancel.wait)
        self._wake = threading.Condition()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._draining = False
        self._resume_at = 0.0  # monotonic: no new attempt before (global backoff: the store is one endpoint)
        self._in_flight = 0
        self._recovered: set[str] = set()
        self.state = OK
        self._state_code = ""
        self.last_error: str | None = None
        self.bytes_uploaded = 0
        self.uploads_done = 0

    @classmethod
    def from_config(
        cls, config: Config, save_path: Path, state_dir: Path, clock: Clock | None = None
    ) -> Uploader:
        from cctv_daemon.upload.s3_client import make_client

        assert config.s3Config is not None
        s3 = config.s3Config
        queue = q.UploadQueue(state_dir / c.CATALOG_FILENAME)
        client = make_client(s3, config.awsCredentials, s3.maxConcurrentUploads * c.UPLOAD_PART_CONCURRENCY)
        return cls(s3, queue, save_path, client, clock)

    # -- bus subscriber (the segment-finisher thread) --------------------------------------------------
    def enqueue_segment(self, seg: FinishedSegment) -> None:
        rel = seg.path.relative_to(self.save_path).as_posix()
        key = object_key(self.s3.s3Path, seg.camera, seg.start, seg.path.name)
        if self.queue.enqueue(rel, seg.camera, seg.start, seg.size, key, self.clock.time()):
            log.debug("upload_queued", camera=seg.camera, path=rel, key=key)
        with self._wake:
            self._wake.notify()

    # -- Component -------------------------------------------------------------------------------------
    def start(self) -> None:
        recovered = [r.path for r in self.queue.all() if r.state == q.UPLOADING]
        self._recovered = set(recovered)
        if self.queue.recover():
            log.warning("uploads_interrupted_redone", count=len(recovered))
        count, _ = self.queue.backlog()
        log.info("uploader_started", bucket=self.s3.s3Bucket, prefix=self.s3.s3Path,
                 endpoint=self.s3.endpointUrl, workers=self.s3.maxConcurrentUploads, backlog=count)
        for i in range(self.s3.maxConcurrentUploads):
            t = threading.Thread(target=self._worker, name=f"uploader-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def tick(self) -> None:
        """Nothing to do on the main loop: workers wake on new segments and on their own timers."""

    def stop(self) -> None:
        """Finish what can be finished within UPLOAD_STOP_GRACE_S, then cancel what is in flight (its row goes
        back to 'pending' and is uploaded again at the next start)."""
        self._draining = True
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + c.UPLOAD_STOP_GRACE_S
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._cancel.set()
        deadline = time.monotonic() + c.UPLOAD_CANCEL_JOIN_S
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        released = self.queue.recover()
        log.info("uploader_stopped", uploads_done=self.uploads_done, bytes=self.bytes_uploaded,
                 released=released, stuck_threads=stuck)

    def status(self) -> dict[str, Any]:
        count, oldest = self.queue.backlog()
        age = None if oldest is None else round(max(0.0, self.clock.time() - oldest), 1)
        return {
            "state": self.state,
            "queue_length": count,
            "oldest_pending_age_s": age,
            "bytes_uploaded": self.bytes_uploaded,
            "uploads_done": self.uploads_done,
            "in_flight": self._in_flight,
            "last_error": self.last_error,
        }

    # -- workers ---------------------------------------------------------------------------------------
    def _worker(self) -> None:
        while not self._cancel.is_set():
            if not self.run_once():
                if self._draining:
                    return
                with self._wake:
                    wait = c.UPLOAD_IDLE_WAIT_S
                    if self._resume_at > self.clock.monotonic():
                        wait = min(wait, self._resume_at - self.clock.monotonic())
                    self._wake.wait(max(0.01, wait))

    def run_once(self) -> bool:
        """Claim the oldest due row and upload it in this thread; False when nothing may be done now."""
        with self._lock:
            if self.clock.monotonic() < self._resume_at:
                return False
            if self.state != OK and self._in_flight > 0:
                return False  # while failing, one probe at a time
            row = self.queue.claim(self.clock.time())
            if row is None:
                return False
            self._in_flight += 1
        try:
            self._run(row)
        finally:
            with self._lock:
                self._in_flight -= 1
        return True

    def _run(self, row: q.UploadRow) -> None:
        path = self.save_path / row.path
        try:
            etag, sha = self._transfer(row, path)
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
        self.queue.mark_uploaded(row.path, etag, sha, self.clock.time())
        self._succeeded(row, path, etag)
        if self.on_uploaded is not None:
            try:
                self.on_uploaded(row.path)
            except Exception:
                log.exception("on_uploaded_failed", camera=row.camera, path=row.path)

    def _transfer(self, row: q.UploadRow, path: Path) -> tuple[str, str]:
        size = path.stat().st_size
        expected_etag, sha = file_digests(path, size, self.threshold, self.chunk_bytes)
        if self._cancel.is_set():
            raise UploadCancelled
        extra: dict[str, Any] = {"Metadata": {c.SHA256_METADATA_KEY: sha}, "ContentType": "video/mp4"}
        if self.s3.storageClass:
            extra["StorageClass"] = self.s3.storageClass
        if self.s3.serverSideEncryption:
            extra["ServerSideEncryption"] = self.s3.serverSideEncryption
        if self.s3.sseKmsKeyId:
            extra["SSEKMSKeyId"] = self.s3.sseKmsKeyId
        if size >= self.threshold and (row.path in self._recovered or row.attempts > 1):
            self._abort_stale_multipart(row)
        with path.open("rb") as raw:
            body: Any = ThrottledReader(raw, self.bucket, self._cancel)  # duck-typed IO
            self.client.upload_fileobj(body, self.s3.s3Bucket, row.s3_key, ExtraArgs=extra,
                                       Config=self.transfer_config)
        head = self.client.head_object(Bucket=self.s3.s3Bucket, Key=row.s3_key)
        got_size = int(head.get("ContentLength", -1))
        got_etag = str(head.get("ETag", "")).strip('"')
        got_sha = head.get("Metadata", {}).get(c.SHA256_METADATA_KEY)
        problems = []
        if got_size != size:
            problems.append(f"size {got_size} != {size}")
        if self.s3.serverSideEncryption != "aws:kms" and got_etag != expected_etag:
            problems.append(f"ETag {got_etag} != {expected_etag}")
        if got_sha != sha:
            problems.append(f"sha256 metadata {got_sha} != {sha}")
        if problems:
            raise VerificationFailed(f"{row.s3_key}: " + "; ".join(problems))
        self._recovered.discard(row.path)
        return got_etag, sha

    def _abort_stale_multipart(self, row: q.UploadRow) -> None:
        """A killed run may have left a multipart upload of this key open (invisible but billed): abort."""
        try:
            found = self.client.list_multipart_uploads(Bucket=self.s3.s3Bucket, Prefix=row.s3_key)
            for up in found.get("Uploads", []):
                if up.get("Key") == row.s3_key and "UploadId" in up:
                    self.client.abort_multipart_upload(Bucket=self.s3.s3Bucket, Key=row.s3_key,
                                                       UploadId=up["UploadId"])
                    log.info("stale_multipart_aborted", camera=row.camera, key=row.s3_key)
        except Exception as exc:
            log.debug("stale_multipart_check_failed", key=row.s3_key, error=redact(str(exc)))

    # -- outcomes --------------------------------------------------------------------------------------
    def _abandon(self, row: q.UploadRow) -> None:
        self.queue.mark_abandoned(row.path, "local file gone before upload")
        log.warning("upload_abandoned", camera=row.camera, path=row.path, reason="local file gone")

    def _succeeded(self, row: q.UploadRow, path: Path, etag: str) -> None:
        with self._lock:
            self.uploads_done += 1
            self.bytes_uploaded += row.size
            self.backoff.reset()
            self._resume_at = 0.0
            recovering = self.state != OK
        if recovering:
            self.queue.make_due()  # the backlog drains at full speed now
        log.debug("uploaded", camera=row.camera, path=row.path, key=row.s3_key, etag=etag,
                  attempts=row.attempts)
        self._set_state(OK, "", "")
        with self._wake:
            self._wake.notify_all()

    def _failed(self, row: q.UploadRow, exc: BaseException) -> None:
        permanent, code, message = classify(exc)
        with self._lock:
            delay = self.backoff.next_delay(at_cap=permanent)
            self._resume_at = self.clock.monotonic() + delay
        self.last_error = f"{code}: {message}"
        self.queue.mark_failed(row.path, permanent, self.last_error, self.clock.time() + delay)
        log.debug("upload_attempt_failed", camera=row.camera, path=row.path, code=code,
                  retry_in_s=round(delay, 1), attempts=row.attempts)
        self._set_state(ERROR if permanent else RETRYING, code, message, retry_in_s=round(delay, 1),
                        camera=row.camera)

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

