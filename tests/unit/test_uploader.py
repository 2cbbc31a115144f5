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
def rig(moto_server: MotoServer, tmp_path: Path, catalog_url: str | None) -> Iterator[tuple[Uploader, FakeClock, Any]]:
    """On each catalog backend (SQLite, PostgreSQL, MariaDB)."""
    from tests.unit.catalog_helpers import open_queue

    clock = FakeClock()
    s3 = moto_server.client()
    cfg = S3Config(s3Bucket=BUCKET, endpointUrl=moto_server.endpoint)
    queue = open_queue(tmp_path / "state" / "catalog.sqlite3", catalog_url)
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
def test_queue_recovers_uploading_rows_and_orders_by_start(tmp_path: Path, catalog_url: str | None) -> None:
    from tests.unit.catalog_helpers import open_queue

    db = tmp_path / "catalog.sqlite3"
    queue = open_queue(db, catalog_url)
    assert queue.enqueue("c/b.mp4", "c", 20.0, 1, "k/b", 100.0)
    assert queue.enqueue("c/a.mp4", "c", 10.0, 1, "k/a", 101.0)
    assert not queue.enqueue("c/a.mp4", "c", 10.0, 1, "k/a", 102.0)  # once
    claimed = queue.claim(1000.0)
    assert claimed is not None and claimed.path == "c/a.mp4" and claimed.attempts == 1
    queue.close()  # "killed" with a row in 'uploading'
    queue = open_queue(db, catalog_url)
    assert queue.get("c/a.mp4").state == "uploading"  # type: ignore[union-attr]
    if catalog_url is not None:  # a shared database: another node's queue neither sees nor recovers the row
        other = open_queue(db, catalog_url, node_id="node-b")
        assert other.all() == [] and other.recover() == 0 and other.claim(1000.0) is None
        other.close()
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


# -- issue 12: supervised workers, reconciliation, per-object retries (real moto, real SQLite catalog) -------
def catalog_rig(moto_server: MotoServer, tmp_path: Path, clock: Any, url: str | None = None,
                **s3_extra: Any) -> tuple[Uploader, Any, Any]:
    """An uploader on the catalog the daemon uses (segments + uploads in one database: SQLite file or `url`)."""
    from cctv_daemon.catalog.store import Catalog
    from tests.unit.catalog_helpers import queue_of

    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    save = tmp_path / "rec"
    db = save / ".cctv" / "catalog.sqlite3"
    catalog = Catalog(db, save, clock, url=url, node_id="node-a")
    cfg = S3Config(s3Bucket=BUCKET, endpointUrl=moto_server.endpoint, **s3_extra)
    up = Uploader(cfg, queue_of(catalog), save, s3, clock, backoff=Backoff(0.05, 0.2, jitter=0.0))
    return up, catalog, s3


def test_worker_survives_database_error_and_status_shows_failing(moto_server: MotoServer, tmp_path: Path) -> None:
    """Finding 1: an error outside the transfer ("database is locked" from the queue) must not end the worker;
    status says `failing` while it lasts; everything is uploaded once it passes."""
    import threading

    from cctv_daemon.core.clock import SystemClock
    from tests.unit.catalog_helpers import put_segment

    up, catalog, s3 = catalog_rig(moto_server, tmp_path, SystemClock(), maxConcurrentUploads=1)
    locked = threading.Event()
    locked.set()
    real_claim = up.queue.claim

    def claim(*args: Any, **kwargs: Any) -> Any:  # fault injection: the queue's database is locked
        if locked.is_set():
            raise sqlite3.OperationalError("database is locked")
        return real_claim(*args, **kwargs)

    up.queue.claim = claim  # type: ignore[method-assign]
    rows = [put_segment(catalog, "cam", 1_800_000_000.0 + 10 * i) for i in range(3)]
    for r in rows:
        up.queue.enqueue(r.path, r.camera, r.start, r.size, f"k/{r.path}", r.start)
    up.start()
    try:
        from tests.support.daemon import wait_for

        failing = wait_for(lambda: (s := up.status())["state"] == "failing" and s, 10, "status: failing")
        assert failing["worker_errors"] >= 1 and "database is locked" in failing["worker_last_error"]
        assert failing["threads_failing"] == ["uploader-0"]
        locked.clear()
        wait_for(lambda: all(r.state == q.UPLOADED for r in up.queue.all()), 20, "uploads after the fault")
        wait_for(lambda: up.status()["state"] == OK, 5, "state ok again")
        assert up.status()["threads_alive"] == 2  # the worker and the housekeeping thread
    finally:
        up.stop()
    assert len(bucket_keys(s3)) == 3


def bucket_keys(s3: Any) -> dict[str, Any]:
    found = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: o for o in found}


def test_error_after_transfer_releases_the_row_and_it_is_redone(moto_server: MotoServer, tmp_path: Path) -> None:
    """Finding 1: mark_uploaded fails once (database locked) after a good transfer: the row is not left in
    'uploading' for ever; it goes back to pending and is uploaded (one object) when the queue answers."""

    from cctv_daemon.core.clock import SystemClock
    from tests.support.daemon import wait_for
    from tests.unit.catalog_helpers import put_segment

    up, catalog, s3 = catalog_rig(moto_server, tmp_path, SystemClock(), maxConcurrentUploads=1)
    calls = {"n": 0}

    def fault(method: str) -> None:
        if method == "mark_uploaded" and calls["n"] == 0:
            calls["n"] += 1
            raise sqlite3.OperationalError("database is locked")

    up.queue.fault = fault
    r = put_segment(catalog, "cam", 1_800_000_000.0)
    up.queue.enqueue(r.path, r.camera, r.start, r.size, "k/one", r.start)
    up.start()
    try:
        wait_for(lambda: up.queue.get(r.path).state == q.UPLOADED, 20, "redone")  # type: ignore[union-attr]
    finally:
        up.stop()
    assert calls["n"] == 1 and up.worker_errors == 1
    assert list(bucket_keys(s3)) == ["k/one"]


def test_reconciliation_queues_segments_without_upload_row(moto_server: MotoServer, tmp_path: Path,
                                                           catalog_url: str | None) -> None:
    """Finding 2: segments catalogued outside the bus (startup recovery, check --repair) get exactly one upload
    row: a full pass at startup, then incremental passes over newer rowids only."""
    from tests.unit.catalog_helpers import put_segment

    clock = FakeClock()
    up, catalog, s3 = catalog_rig(moto_server, tmp_path, clock, catalog_url)
    old = [put_segment(catalog, "cam", clock.time() - 600 + 10 * i) for i in range(3)]  # e.g. recovery
    clock.advance(60)
    assert up.reconciler.run(full=True) == 3
    assert up.reconciler.run() == 0  # incremental: nothing newer
    assert sorted(r.path for r in up.queue.all()) == sorted(r.path for r in old)
    fresh = put_segment(catalog, "cam", clock.time())  # check --repair while running
    assert up.reconciler.run() == 0  # too fresh: the bus may be queueing it right now
    clock.advance(11)
    assert up.reconciler.run() == 1 and up.reconciler.run(full=True) == 0
    row = up.queue.get(fresh.path)
    assert row is not None and row.check_remote == 1
    assert row.s3_key == object_key("", "cam", fresh.start, Path(fresh.path).name)
    while up.run_once():
        pass
    assert {r.state for r in up.queue.all()} == {q.UPLOADED} and len(up.queue.all()) == 4
    assert len(bucket_keys(s3)) == 4 and up.uploads_done == 4


def test_rebuilt_catalog_marks_objects_already_in_bucket(moto_server: MotoServer, tmp_path: Path) -> None:
    """Finding 2 / decision: after the catalog is lost and rebuilt from the files, objects already in the
    bucket with the same size are marked uploaded, not sent again; a missing one is sent."""
    from cctv_daemon.catalog import recovery
    from tests.unit.catalog_helpers import put_segment

    clock = FakeClock()
    up, catalog, s3 = catalog_rig(moto_server, tmp_path, clock)
    segs = [put_segment(catalog, "cam", clock.time() - 600 + 10 * i, size=2000 + i) for i in range(4)]
    for r in segs:
        up.queue.enqueue(r.path, r.camera, r.start, r.size,
                         object_key("", r.camera, r.start, Path(r.path).name), r.start)
    while up.run_once():
        pass
    before = bucket_keys(s3)
    assert len(before) == 4
    gone = object_key("", "cam", segs[0].start, Path(segs[0].path).name)
    s3.delete_object(Bucket=BUCKET, Key=gone)
    up.queue.close()
    catalog.close()
    for f in (tmp_path / "rec" / ".cctv").glob("catalog.sqlite3*"):
        f.unlink()  # the catalog is lost
    up2, catalog2, _ = catalog_rig(moto_server, tmp_path, clock)
    assert recovery.rebuild(catalog2, tmp_path / "rec" / ".cctv", replace=True) == 4
    clock.advance(60)
    assert up2.reconciler.run(full=True) == 4
    sent: list[str] = []
    real = up2.client.upload_fileobj

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[2])
        return real(*args, **kwargs)

    up2.client.upload_fileobj = counting  # type: ignore[method-assign]
    while up2.run_once():
        pass
    assert sent == [gone]
    assert {r.state for r in up2.queue.all()} == {q.UPLOADED}
    assert up2.already_in_bucket == 3 and up2.uploads_done == 1
    after = bucket_keys(s3)
    assert set(after) == set(before)
    for key in set(before) - {gone}:
        assert after[key]["LastModified"] == before[key]["LastModified"]


def test_reconciliation_after_segments_rows_replaced(moto_server: MotoServer, tmp_path: Path) -> None:
    """`check --rebuild` replaces the segments rows (their rowids start again): the incremental pass notices
    and does a full one, so no segment is left without an upload row."""
    from cctv_daemon.catalog import recovery
    from tests.unit.catalog_helpers import put_segment

    clock = FakeClock()
    up, catalog, _ = catalog_rig(moto_server, tmp_path, clock)
    segs = [put_segment(catalog, "cam", clock.time() - 600 + 10 * i) for i in range(5)]
    clock.advance(60)
    assert up.reconciler.run(full=True) == 5
    u = catalog.db.t.uploads
    with catalog.transaction() as db:
        db.execute(u.delete().where(u.c.path.in_([segs[1].path, segs[3].path])))
    recovery.rebuild(catalog, tmp_path / "rec" / ".cctv", replace=True)
    clock.advance(60)
    assert up.reconciler.run() == 2
    assert len(up.queue.all()) == 5


def test_one_bad_object_does_not_delay_others_and_is_given_up(moto_server: MotoServer, tmp_path: Path) -> None:
    """Finding 4: one object that always fails has its own retry time, attempts and last error; the others go
    at once; after maxAttempts it is `failed`: kept on disk (clearAfterUpload deletes only the others), not
    an 'uploaded' retention candidate, listed by status, and re-queued by retry."""
    from cctv_daemon.upload.uploader import VerificationFailed
    from tests.unit.catalog_helpers import put_segment

    clock = FakeClock()
    up, catalog, s3 = catalog_rig(moto_server, tmp_path, clock, maxAttempts=3)
    segs = [put_segment(catalog, "cam", clock.time() - 600 + 10 * i) for i in range(4)]
    for r in segs:
        up.queue.enqueue(r.path, r.camera, r.start, r.size, f"k/{Path(r.path).name}", r.start)
    bad = segs[0]  # the oldest: claimed first every time it is due
    broken = {"on": True}
    real = up._transfer

    def transfer(row: q.UploadRow, path: Path) -> Any:
        if broken["on"] and row.path == bad.path:
            raise VerificationFailed(f"{row.s3_key}: size 1 != {row.size}")
        return real(row, path)

    up._transfer = transfer  # type: ignore[method-assign]
    cleared: list[str] = []

    def clear(rel: str) -> None:  # what clearAfterUpload does
        (up.save_path / rel).unlink()
        cleared.append(rel)

    up.on_uploaded = clear
    assert up.run_once()  # the bad one fails ...
    assert up.run_once() and up.run_once() and up.run_once()  # ... and the others go at once
    assert up.state == OK and sorted(cleared) == sorted(r.path for r in segs[1:])
    row = up.queue.get(bad.path)
    assert row is not None and row.state == q.PENDING and row.failures == 1
    assert row.last_error is not None and "VerificationFailed" in row.last_error
    assert row.next_attempt_at > clock.time()  # its own retry time
    for expected_failures in (2, 3):
        assert not up.run_once()
        clock.advance(row.next_attempt_at - clock.time())
        assert up.run_once()
        row = up.queue.get(bad.path)
        assert row is not None and row.failures == expected_failures
    assert row.state == q.FAILED and row.attempts == 3
    clock.advance(10_000)
    assert not up.run_once()  # given up: no more automatic attempts
    status = up.status()
    assert status["failed_count"] == 1 and status["failed_oldest_path"] == bad.path
    assert "VerificationFailed" in status["failed_last_error"] and status["queue_length"] == 0
    assert (up.save_path / bad.path).exists() and bad.path not in cleared
    assert bad.path not in [r.path for r in catalog.oldest(uploaded=True)]  # not in the 'uploaded' group
    assert [r.path for r in catalog.oldest(uploaded=False)] == [bad.path]
    broken["on"] = False
    assert [r.path for r in up.queue.retry(f"k/{Path(bad.path).name}")] == [bad.path]
    assert up.run_once()
    assert up.queue.get(bad.path).state == q.UPLOADED  # type: ignore[union-attr]
    assert len(bucket_keys(s3)) == 4 and up.status()["failed_count"] == 0


def test_many_objects_failing_is_the_store_not_the_objects(moto_server: MotoServer, tmp_path: Path) -> None:
    """When every object fails (a store answering 500 to all), no object uses up its attempts: the uploader is
    `retrying`, and nothing is given up."""
    from tests.unit.catalog_helpers import put_segment

    clock = FakeClock()
    up, catalog, _ = catalog_rig(moto_server, tmp_path, clock, maxAttempts=2)
    segs = [put_segment(catalog, "cam", clock.time() - 600 + 10 * i) for i in range(3)]
    for r in segs:
        up.queue.enqueue(r.path, r.camera, r.start, r.size, f"k/{Path(r.path).name}", r.start)

    def transfer(row: q.UploadRow, path: Path) -> Any:
        raise client_error("InternalError", 500)

    up._transfer = transfer  # type: ignore[method-assign]
    for _ in range(12):
        while up.run_once():
            pass
        clock.advance(1.0)
    assert up.state == RETRYING
    assert all(r.state == q.PENDING for r in up.queue.all()), up.queue.all()
    assert up.status()["failed_count"] == 0


def test_old_schema_catalog_is_migrated_in_place(tmp_path: Path) -> None:
    """The uploads table of a catalog made before the versioned schema (its first columns only) is adopted: its
    rows are kept and usable, the later columns default to 0."""
    from tests.support import legacy_catalog

    db = tmp_path / "catalog.sqlite3"
    legacy_catalog.make(db, [], uploads=[("c/a.mp4", "c", 10, 5, "k/a", "failed", 7, "NoSuchBucket: x"),
                                         ("c/b.mp4", "c", 20, 5, "k/b", "uploaded", 1, None)])
    queue = q.UploadQueue(db)
    rows = queue.all()
    assert [(r.path, r.state, r.attempts, r.failures, r.last_error) for r in rows] == [
        ("c/a.mp4", "failed", 7, 0, "NoSuchBucket: x"), ("c/b.mp4", "uploaded", 1, 0, None)]
    claimed = queue.claim(100.0, max_attempts=20)  # a store-blocked 'failed' row is still retried
    assert claimed is not None and claimed.path == "c/a.mp4"
    queue.close()
    assert len(q.UploadQueue(db).all()) == 2  # idempotent


def test_max_attempts_config_key() -> None:
    base = {"cameras": [{"cameraName": "t1", "source": "test"}], "storageConfig": {"savePath": "/tmp/x"}}
    cfg = parse_config({**base, "s3Config": {"s3Bucket": "abc"}}, "c.json", Path("/tmp"), None)
    assert cfg.s3Config is not None and cfg.s3Config.maxAttempts == 20
    cfg = parse_config({**base, "s3Config": {"s3Bucket": "abc", "maxAttempts": 3}}, "c.json", Path("/tmp"), None)
    assert cfg.s3Config is not None and cfg.s3Config.maxAttempts == 3


def test_failing_object_does_not_hold_back_the_queue(moto_server: MotoServer, tmp_path: Path) -> None:
    """Finding 4 with the default config: the oldest object keeps failing; the newer ones are uploaded right
    away (no shared backoff), and the uploader stays `ok`."""
    from cctv_daemon.upload.uploader import VerificationFailed
    from tests.unit.catalog_helpers import put_segment

    clock = FakeClock()
    up, catalog, s3 = catalog_rig(moto_server, tmp_path, clock)
    segs = [put_segment(catalog, "cam", clock.time() - 600 + 10 * i) for i in range(3)]
    for r in segs:
        up.queue.enqueue(r.path, r.camera, r.start, r.size, f"k/{Path(r.path).name}", r.start)
    real = up._transfer

    def transfer(row: q.UploadRow, path: Path) -> Any:
        if row.path == segs[0].path:
            raise VerificationFailed(f"{row.s3_key}: sha256 metadata None != abc")
        return real(row, path)

    up._transfer = transfer  # type: ignore[method-assign]
    assert up.run_once()
    assert up.run_once() and up.run_once()
    assert [r.state for r in up.queue.all()] == [q.PENDING, q.UPLOADED, q.UPLOADED]
    assert up.state == OK and len(bucket_keys(s3)) == 2


def test_status_renders_failing_uploader_and_failed_uploads_without_secrets(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    """`status` (human) shows a failing uploader and the failed uploads; a secret in a worker's error text is
    never shown (redacted before it is stored)."""

    from cctv_daemon.core.redact import register_secrets
    from cctv_daemon.service.status import format_human

    secret = "wJalrXUtnFEMI-worker-secret"
    register_secrets([secret])
    clock = FakeClock()
    up, _catalog, _ = catalog_rig(moto_server, tmp_path, clock)
    up._step_failed("uploader-0", sqlite3.OperationalError(f"database is locked ({secret})"))
    data = up.status()
    assert data["state"] == "failing" and secret not in json.dumps(data)
    text = format_human({"components": {"uploader": data}}, now=clock.time())
    assert "uploader FAILING" in text and "database is locked" in text and secret not in text
    up.queue.enqueue("cam/a.mp4", "cam", clock.time() - 100, 5, "k/a.mp4", clock.time())
    with sqlite3.connect(up.queue.db_path) as conn:
        conn.execute("UPDATE uploads SET state='failed', failures=20, last_error='VerificationFailed: x'")
    text = format_human({"components": {"uploader": up.status()}}, now=clock.time())
    assert "FAILED uploads (kept on disk): 1" in text and "cam/a.mp4" in text and "uploads retry" in text
