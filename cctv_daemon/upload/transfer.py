"""Sending one object: the S3 key, the local ETag and sha256, the bandwidth limit, the upload itself with its
verification (size, ETag, sha256 metadata), and the check for an object already in the bucket."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import structlog
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from s3transfer.utils import ChunksizeAdjuster

from cctv_daemon.config.model import S3Config
from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import Clock
from cctv_daemon.core.redact import redact
from cctv_daemon.upload import queue as q
from cctv_daemon.upload.errors import UploadCancelled, VerificationFailed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = structlog.get_logger("cctv_daemon.upload")

MB = 1024 * 1024


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




class Sent:
    """What a transfer did: the verified ETag and sha256, and whether the object was already in the bucket."""

    __slots__ = ("already_there", "etag", "sha256")

    def __init__(self, etag: str, sha256: str, already_there: bool = False) -> None:
        self.etag, self.sha256, self.already_there = etag, sha256, already_there


class Sender:
    """Uploads one file to its key and verifies it; shared by the worker threads (stateless per call)."""

    def __init__(self, s3: S3Config, client: S3Client, cancel: threading.Event, chunk_mb: int,
                 bucket: TokenBucket | None) -> None:
        self.s3 = s3
        self.client = client
        self.cancel = cancel
        self.bucket = bucket
        self.threshold = s3.multipartThresholdMB * MB
        self.chunk_bytes = chunk_mb * MB
        self.transfer_config = TransferConfig(
            multipart_threshold=self.threshold,
            multipart_chunksize=self.chunk_bytes,
            max_concurrency=c.UPLOAD_PART_CONCURRENCY,
            preferred_transfer_client="classic",  # the CRT client picks its own part size: ETag unknowable
        )
        self.recovered: set[str] = set()  # rows a killed run left 'uploading': maybe an open multipart upload

    def send(self, row: q.UploadRow, path: Path) -> Sent:
        size = path.stat().st_size
        expected_etag, sha = file_digests(path, size, self.threshold, self.chunk_bytes)
        if self.cancel.is_set():
            raise UploadCancelled
        if row.check_remote:
            found = self._already_there(row, size, sha)
            if found is not None:
                return Sent(found, sha, already_there=True)
        extra: dict[str, Any] = {"Metadata": {c.SHA256_METADATA_KEY: sha}, "ContentType": "video/mp4"}
        if self.s3.storageClass:
            extra["StorageClass"] = self.s3.storageClass
        if self.s3.serverSideEncryption:
            extra["ServerSideEncryption"] = self.s3.serverSideEncryption
        if self.s3.sseKmsKeyId:
            extra["SSEKMSKeyId"] = self.s3.sseKmsKeyId
        if size >= self.threshold and (row.path in self.recovered or row.attempts > 1):
            self._abort_stale_multipart(row)
        with path.open("rb") as raw:
            body: Any = ThrottledReader(raw, self.bucket, self.cancel)  # duck-typed IO
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
        self.recovered.discard(row.path)
        return Sent(got_etag, sha)

    def _already_there(self, row: q.UploadRow, size: int, sha: str) -> str | None:
        """A row queued by reconciliation (e.g. a rebuilt catalog): an object already at its key with the same
        size (and the same sha256 metadata, when it has ours) counts as uploaded. Returns its ETag, or None."""
        try:
            head = self.client.head_object(Bucket=self.s3.s3Bucket, Key=row.s3_key)
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if status == 404 or str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                return None
            raise
        got_sha = head.get("Metadata", {}).get(c.SHA256_METADATA_KEY)
        if int(head.get("ContentLength", -1)) != size or (got_sha is not None and got_sha != sha):
            log.info("upload_replaces_different_object", camera=row.camera, key=row.s3_key, local_size=size,
                     remote_size=head.get("ContentLength"))
            return None
        return str(head.get("ETag", "")).strip('"')

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
