"""Uploader pieces against a real moto S3 server: keys, ETags, classification, backoff with a FakeClock,
the durable queue's recovery, the bandwidth bucket and the config-permission warning."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from cctv_daemon.config.model import S3Config, parse_config
from cctv_daemon.config.secret_file_check import warn_if_secrets_readable
from cctv_daemon.core.backoff import Backoff
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.upload import queue as q
from cctv_daemon.upload.uploader import (
    ERROR,
    MB,
    OK,
    RETRYING,
    TokenBucket,
    Uploader,
    classify,
    file_digests,
    object_key,
)
from tests.support.s3 import MotoServer

BUCKET = "cctv-unit"


def client_error(code: str, status: int, op: str = "PutObject") -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, op)


# -- keys ----------
def test_object_key_uses_utc_date_of_start() -> None:
    start = 1795564799.6  # 2026-11-24T23:59:59.6Z rounds to 2026-11-25T00:00:00Z, like the file's folder
    name = "gate_main_20261125T000000Z_20261125T001000Z.mp4"
    assert object_key("recordings/2026", "gate", start, name) == f"recordings/2026/gate/2026/11/25/{name}"
    assert object_key("", "gate", 1795564000.0, name) == f"gate/2026/11/24/{name}"
    assert object_key("/a/b/", "gate", 1795564000.0, name) == f"a/b/gate/2026/11/24/{name}"


# -- ETags against moto's answer -----------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1234, 5 * MB, 11 * MB + 17])
def test_local_etag_matches_store(moto_server: MotoServer, tmp_path: Path, size: int) -> None:
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    f = tmp_path / "seg.mp4"
    f.write_bytes(random.Random(size).randbytes(size))
    cfg = S3Config(s3Bucket=BUCKET, endpointUrl=moto_server.endpoint, multipartThresholdMB=5)
    up = Uploader(cfg, q.UploadQueue(tmp_path / "db.sqlite3"), tmp_path, s3, FakeClock(), chunk_mb=5)
    s3.upload_file(str(f), BUCKET, "k", Config=up.transfer_config)
    etag, sha = file_digests(f, size, up.threshold, up.chunk_bytes)
    head = s3.head_object(Bucket=BUCKET, Key="k")
    assert head["ETag"].strip('"') == etag
    assert ("-" in etag) == (size >= 5 * MB)
    if size == 11 * MB + 17:
        assert etag.endswith("-3")
    assert len(sha) == 64


# -- classification ----------
@pytest.mark.parametrize(
    ("exc", "permanent", "code"),
    [
        (client_error("NoSuchBucket", 404), True, "NoSuchBucket"),
        (client_error("AccessDenied", 403), True, "AccessDenied"),
        (client_error("InvalidAccessKeyId", 403), True, "InvalidAccessKeyId"),
        (client_error("SignatureDoesNotMatch", 403), True, "SignatureDoesNotMatch"),
        (client_error("403", 403, "HeadObject"), True, "403"),
        (client_error("SlowDown", 503), False, "SlowDown"),
        (client_error("InternalError", 500), False, "InternalError"),
        (client_error("RequestTimeout", 400), False, "RequestTimeout"),
        (client_error("404", 404, "HeadObject"), False, "404"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), False, "EndpointConnectionError"),
        (NoCredentialsError(), True, "NoCredentials"),
        (ConnectionResetError(), False, "ConnectionResetError"),
    ],
)
def test_classify(exc: Exception, permanent: bool, code: str) -> None:
    assert classify(exc)[:2] == (permanent, code)


def test_classify_sees_through_s3_upload_failed_error() -> None:
    try:
        try:
            raise client_error("NoSuchBucket", 404)
        except ClientError as e:
            raise S3UploadFailedError(f"Failed to upload x to b/k: {e}") from None
    except S3UploadFailedError as wrapped:
        assert classify(wrapped)[:2] == (True, "NoSuchBucket")
        wrapped.__context__ = None
        assert classify(wrapped)[:2] == (True, "NoSuchBucket")  # from the text alone


# -- backoff and state with a FakeClock, against a real store ------------------------------------------------
@pytest.fixture
def rig(moto_server: MotoServer, tmp_path: Path) -> Iterator[tuple[Uploader, FakeClock, Any]]:
    clock = FakeClock()
    s3 = moto_server.client()
    cfg = S3Config(s3Bucket=BUCKET, endpointUrl=moto_server.endpoint)
    queue = q.UploadQueue(tmp_path / "state" / "catalog.sqlite3")
    up = Uploader(cfg, queue, tmp_path, s3, clock, backoff=Backoff(1.0, 8.0, jitter=0.0))
    yield up, clock, s3
    queue.close()


def add_segment(up: Uploader, clock: FakeClock, name: str, size: int = 1000) -> str:
    path = up.save_path / "cam" / "2026-11-21" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    rel = path.relative_to(up.save_path).as_posix()
    up.queue.enqueue(rel, "cam", clock.time(), size, f"cam/{name}", clock.time())
    return rel


def test_permanent_error_retried_at_cap_then_recovers(rig: tuple[Uploader, FakeClock, Any]) -> None:
    up, clock, s3 = rig
    rel = add_segment(up, clock, "a.mp4")
    assert up.run_once()  # bucket missing
    assert up.state == ERROR and up.last_error is not None and up.last_error.startswith("NoSuchBucket")
    row = up.queue.get(rel)
    assert row is not None and row.state == q.FAILED and row.attempts == 1
    assert not up.run_once()  # not before the cap
    clock.advance(7.9)
    assert not up.run_once()
    clock.advance(0.2)
    assert up.run_once()  # retried at the cap, still failing
    assert up.queue.get(rel).attempts == 2  # type: ignore[union-attr]
    s3.create_bucket(Bucket=BUCKET)
    clock.advance(8.1)
    assert up.run_once()
    assert up.state == OK
    row = up.queue.get(rel)
    assert row is not None and row.state == q.UPLOADED and row.sha256 and row.etag
    assert s3.get_object(Bucket=BUCKET, Key="cam/a.mp4")["Body"].read() == (up.save_path / rel).read_bytes()
    assert up.status()["uploads_done"] == 1 and up.status()["queue_length"] == 0


def test_transient_errors_back_off_exponentially_and_backlog_drains(
    rig: tuple[Uploader, FakeClock, Any], moto_server: MotoServer
) -> None:
    up, clock, s3 = rig
    s3.create_bucket(Bucket=BUCKET)
    first = add_segment(up, clock, "a.mp4")
    moto_server.kill()
    delays = []
    for _ in range(4):
        t0 = clock.monotonic()
        assert up.run_once()
        assert up.state == RETRYING
        delays.append(up._resume_at - t0)
        clock.advance(delays[-1])
    assert delays == [1.0, 2.0, 4.0, 8.0]
    second = add_segment(up, clock, "b.mp4")
    clock.advance(-0.0)
    moto_server.start()
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    clock.advance(8.0)
    assert up.run_once() and up.run_once()  # oldest first, then the rest without waiting
    assert up.state == OK
    assert [r.state for r in up.queue.all()] == [q.UPLOADED, q.UPLOADED]
    assert up.queue.all()[0].path == first and up.queue.all()[1].path == second


def test_vanished_file_is_abandoned(rig: tuple[Uploader, FakeClock, Any]) -> None:
    up, clock, s3 = rig
    s3.create_bucket(Bucket=BUCKET)
    rel = add_segment(up, clock, "a.mp4")
    (up.save_path / rel).unlink()
    assert up.run_once()
    assert up.queue.get(rel).state == q.ABANDONED  # type: ignore[union-attr]
    assert up.state == OK


# -- the durable queue ----------
def test_queue_recovers_uploading_rows_and_orders_by_start(tmp_path: Path) -> None:
    db = tmp_path / "catalog.sqlite3"
    queue = q.UploadQueue(db)
    assert queue.enqueue("c/b.mp4", "c", 20.0, 1, "k/b", 100.0)
    assert queue.enqueue("c/a.mp4", "c", 10.0, 1, "k/a", 101.0)
    assert not queue.enqueue("c/a.mp4", "c", 10.0, 1, "k/a", 102.0)  # once
    claimed = queue.claim(1000.0)
    assert claimed is not None and claimed.path == "c/a.mp4" and claimed.attempts == 1
    queue.close()  # "killed" with a row in 'uploading'
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT state FROM uploads WHERE path='c/a.mp4'").fetchone() == ("uploading",)
    conn.close()
    queue = q.UploadQueue(db)
    assert queue.recover() == 1
    assert [(r.path, r.state) for r in queue.all()] == [("c/a.mp4", "pending"), ("c/b.mp4", "pending")]
    assert queue.backlog() == (2, 100.0)
    again = queue.claim(1000.0)
    assert again is not None and again.path == "c/a.mp4" and again.attempts == 2
    queue.mark_abandoned("c/b.mp4", "deleted by retention")
    queue.mark_uploaded("c/a.mp4", "e", "s", 1001.0)
    assert queue.backlog() == (0, None)


# -- bandwidth ----------
def test_token_bucket_limits_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100_000.0, clock, sleep=clock.advance)
    t0 = clock.monotonic()
    for _ in range(100):
        bucket.consume(10_000)  # 1 MB at 100 kB/s: 10 s minus the burst
    elapsed = clock.monotonic() - t0
    burst = bucket.capacity / 100_000.0
    assert 10.0 - burst - 0.01 <= elapsed <= 10.0 + 0.01


# -- config permissions ----------
@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_warns_when_config_with_secrets_is_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cctv_daemon.core.log_setup import setup_logging

    setup_logging("info", None, stream=None)
    data = {"cameras": [{"cameraName": "t1", "source": "test"}],
            "storageConfig": {"savePath": str(tmp_path)}, "s3Config": {"s3Bucket": "abc"},
            "awsCredentials": {"accessKeyId": "AKIAEXAMPLE1", "secretAccessKey": "very-secret-key"}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    config = parse_config(data, str(path), tmp_path, path)
    path.chmod(0o644)
    assert warn_if_secrets_readable(config, path)
    out = capsys.readouterr().out
    assert "config_file_readable_by_others" in out and "0o644" in out
    assert "very-secret-key" not in out and "AKIAEXAMPLE1" not in out
    path.chmod(0o600)
    assert not warn_if_secrets_readable(config, path)
    plain = {k: v for k, v in data.items() if k != "awsCredentials"}
    no_secrets = parse_config(plain, str(path), tmp_path, path)
    path.chmod(0o644)
    assert not warn_if_secrets_readable(no_secrets, path)
