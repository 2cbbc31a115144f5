"""The real daemon uploading to a real S3 endpoint (moto_server over HTTP): happy path, outage, SIGKILL in the
middle of an upload, clearAfterUpload with a missing bucket, wrong credentials; no secret in any log line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.service.status import read_status
from cctv_daemon.upload.uploader import object_key
from tests.conftest import DaemonFactory
from tests.support.daemon import run_cli, wait_for
from tests.support.s3 import MotoServer

BUCKET = "cctv-it"
PREFIX = "site/a"
FAST_BACKOFF = {"CCTV_UPLOAD_BACKOFF_S": "0.3,1.5"}


def upload_config(s3: dict[str, Any], creds: tuple[str, str],
                  storage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "cameras": [{"cameraName": "t1", "source": "test", "videoDuration": 1}],
        "storageConfig": {**(storage or {})},
        "logging": {"level": "info"},
        "s3Config": s3,
        "awsCredentials": {"accessKeyId": creds[0], "secretAccessKey": creds[1], "region": "us-east-1"},
    }


def upload_rows(save: Path) -> list[dict[str, Any]]:
    db = save / ".cctv" / "catalog.sqlite3"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM uploads ORDER BY start")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def local_segments(save: Path, camera: str = "t1") -> list[Path]:
    return sorted((save / camera).rglob("*.mp4")) if (save / camera).exists() else []


def bucket_objects(s3: Any, bucket: str) -> dict[str, int]:
    keys: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            keys[obj["Key"]] = obj["Size"]
    return keys


def s3_cfg(moto: MotoServer, **extra: Any) -> dict[str, Any]:
    return {"s3Bucket": BUCKET, "s3Path": PREFIX, "endpointUrl": moto.endpoint, "addressingStyle": "path",
            **extra}


def uploaded(save: Path) -> list[dict[str, Any]]:
    return [r for r in upload_rows(save) if r["state"] == "uploaded"]


def expected_key(save: Path, seg: Path) -> str:
    rows = {r["path"]: r for r in upload_rows(save)}
    row = rows[seg.relative_to(save).as_posix()]
    return object_key(PREFIX, "t1", row["start"], seg.name)


def test_happy_path_every_segment_lands_with_its_bytes(moto_server: MotoServer,
                                                        daemon_factory: DaemonFactory) -> None:
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    daemon = daemon_factory(upload_config(s3_cfg(moto_server), creds=("testing", "testing")))
    save = daemon.save_path
    wait_for(lambda: len(uploaded(save)) >= 3, 60, "3 uploaded segments")
    assert daemon.stop() == 0
    segs = local_segments(save)
    rows = upload_rows(save)
    assert len(segs) >= 3 and len(rows) == len(segs)
    assert all(r["state"] == "uploaded" for r in rows), rows  # the last one too: drained on stop
    objects = bucket_objects(s3, BUCKET)
    assert len(objects) == len(segs)
    for seg in segs:
        key = expected_key(save, seg)
        assert key.startswith(f"{PREFIX}/t1/") and key.count("/") == 6
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert body == seg.read_bytes(), key
    assert len(daemon.events("upload_error")) == 0


def test_outage_every_segment_uploaded_once_recording_unaffected(
    moto_server: MotoServer, daemon_factory: DaemonFactory
) -> None:
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    daemon = daemon_factory(upload_config(s3_cfg(moto_server), creds=("testing", "testing")), FAST_BACKOFF)
    save = daemon.save_path
    wait_for(lambda: len(uploaded(save)) >= 2, 60, "2 uploaded segments")
    moto_server.kill()  # outage: the store loses everything it had
    before = {r["path"] for r in uploaded(save)}
    at_kill = len(upload_rows(save))
    wait_for(lambda: len(upload_rows(save)) >= at_kill + 4, 60, "segments recorded during the outage")
    assert len(uploaded(save)) <= len(before) + 1  # at most one was already on its way
    wait_for(lambda: daemon.events("upload_retrying"), 20, "retrying state")
    moto_server.start()
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    wait_for(lambda: all(r["state"] == "uploaded" for r in upload_rows(save)), 60, "the backlog to drain")
    assert daemon.stop() == 0
    rows = upload_rows(save)
    segs = local_segments(save)
    assert len(rows) == len(segs) and all(r["state"] == "uploaded" for r in rows)
    objects = bucket_objects(s3, BUCKET)
    after_outage = [s for s in segs if s.relative_to(save).as_posix() not in before]
    want = {expected_key(save, s): s.stat().st_size for s in after_outage}
    # the one possibly in flight at the kill was redone; everything else after it uploaded exactly once
    assert set(want) <= set(objects) and len(objects) <= len(want) + 1
    assert all(objects[k] == size for k, size in want.items())
    assert len(daemon.events("upload_retrying")) == 1 and len(daemon.events("upload_recovered")) == 1


def test_sigkill_mid_upload_object_complete_exactly_once(moto_server: MotoServer,
                                                         daemon_factory: DaemonFactory) -> None:
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    slow = s3_cfg(moto_server, bandwidthLimitMBps=0.002)  # ~2 kB/s: a 15 kB segment takes ~7 s
    daemon = daemon_factory(upload_config(slow, creds=("testing", "testing")))
    save = daemon.save_path
    row = wait_for(lambda: [r for r in upload_rows(save) if r["state"] == "uploading"], 60, "upload")[0]
    daemon.kill()
    assert {r["path"]: r["state"] for r in upload_rows(save)}[row["path"]] == "uploading"
    assert row["s3_key"] not in bucket_objects(s3, BUCKET)  # killed mid-upload: no object yet
    # full speed now
    daemon = daemon_factory(upload_config(s3_cfg(moto_server), creds=("testing", "testing")))
    wait_for(lambda: daemon.events("uploads_interrupted_redone"), 30, "recovery at startup")
    wait_for(lambda: next((r for r in upload_rows(save) if r["path"] == row["path"]), {}).get("state")
             == "uploaded", 60, "the interrupted upload redone")
    assert daemon.stop() == 0
    objects = bucket_objects(s3, BUCKET)
    seg = save / row["path"]
    assert objects[row["s3_key"]] == seg.stat().st_size
    assert s3.get_object(Bucket=BUCKET, Key=row["s3_key"])["Body"].read() == seg.read_bytes()
    done = uploaded(save)
    assert len(objects) == len(done) and {r["s3_key"] for r in done} == set(objects)


def test_clear_after_upload_only_after_verified_upload(moto_server: MotoServer,
                                                       daemon_factory: DaemonFactory) -> None:
    """Bucket missing at first: error state (one line), retries at the cap, files kept; then the bucket
    appears: uploaded, verified, then deleted. No secret in any log line."""
    access, secret = "AKIAUPLOADTEST77", "uPl0ad/Secret+Key-never-logged"
    daemon = daemon_factory(upload_config(s3_cfg(moto_server), creds=(access, secret),
                                          storage={"clearAfterUpload": True}), FAST_BACKOFF)
    save = daemon.save_path
    s3 = moto_server.client()
    wait_for(lambda: daemon.events("upload_error"), 60, "error state")
    wait_for(lambda: len(upload_rows(save)) >= 3 and upload_rows(save)[0]["attempts"] >= 4, 30,
             "retries at the cap")
    rows = upload_rows(save)
    assert {r["state"] for r in rows} <= {"failed", "pending", "uploading"}
    assert all((save / r["path"]).exists() for r in rows)  # nothing deleted while failing
    assert "NoSuchBucket" in (rows[0]["last_error"] or "")
    s3.create_bucket(Bucket=BUCKET)
    wait_for(lambda: len(uploaded(save)) >= len(rows), 30, "uploads after the bucket appeared")
    assert daemon.stop() == 0
    objects = bucket_objects(s3, BUCKET)
    for r in upload_rows(save):
        assert r["state"] == "uploaded"
        assert not (save / r["path"]).exists()  # deleted, after the verified upload
        assert objects[r["s3_key"]] == r["size"]
    errors = daemon.events("upload_error")
    assert len(errors) == 1 and errors[0]["code"] == "NoSuchBucket"
    assert len(daemon.events("upload_recovered")) == 1
    text = daemon.output() + "".join(p.read_text() for p in (save / ".cctv" / "logs").glob("*.log*"))
    assert secret not in text and access not in text


def test_wrong_credentials_error_state_no_secret_in_logs(
    daemon_factory: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")  # moto checks credentials (IAM) from now on
    access, secret = "AKIAWRONGKEYTEST", "wr0ng/Secret+value-not-to-be-logged"
    with MotoServer() as moto:
        daemon = daemon_factory(upload_config(s3_cfg(moto), creds=(access, secret)), FAST_BACKOFF)
        save = daemon.save_path
        wait_for(lambda: upload_rows(save) and upload_rows(save)[0]["attempts"] >= 4, 60,
                 "retries at the cap")
        assert daemon.stop() == 0
    errors = daemon.events("upload_error")
    assert len(errors) == 1 and errors[0]["code"] == "InvalidAccessKeyId", errors
    assert not daemon.events("upload_retrying")
    rows = upload_rows(save)
    assert rows and all(r["state"] in ("failed", "pending") for r in rows)
    text = daemon.output() + "".join(p.read_text() for p in (save / ".cctv" / "logs").glob("*.log*"))
    assert secret not in text and access not in text
    assert all(secret not in (r["last_error"] or "") and access not in (r["last_error"] or "") for r in rows)


# -- issue 12: supervised uploads, one upload row per complete segment, retry of failed uploads ---------------
def _uploader_status(save: Path) -> dict[str, Any]:
    data = read_status(save / ".cctv") or {}
    comp = data.get("components", {}).get("uploader")
    return comp if isinstance(comp, dict) else {}


def _all_segments_uploaded(save: Path) -> bool:
    rows = {r["path"]: r["state"] for r in upload_rows(save)}
    segs = [s.relative_to(save).as_posix() for s in local_segments(save)]
    return bool(segs) and all(rows.get(s) == "uploaded" for s in segs)


def test_database_error_in_worker_shows_failing_and_uploads_go_on(
    moto_server: MotoServer, daemon_factory: DaemonFactory
) -> None:
    """Finding 1: the queue's database is 'locked' for the first 16 claims (fault hook): the workers live on
    with backoff, `status` says `failing` meanwhile, then every segment is uploaded."""
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    conf = upload_config(s3_cfg(moto_server), creds=("testing", "testing"))
    daemon = daemon_factory(conf, {"CCTV_UPLOAD_QUEUE_FAULT": "claim:16"})
    save = daemon.save_path
    try:
        failing = wait_for(lambda: (u := _uploader_status(save)).get("state") == "failing" and u, 60,
                           "status: uploader failing", proc=daemon.proc)
        assert "database is locked" in failing["worker_last_error"] and failing["threads_failing"]
        wait_for(lambda: len(uploaded(save)) >= 3, 60, "uploads after the fault", proc=daemon.proc)
        wait_for(lambda: _uploader_status(save).get("state") == "ok", 30, "status: ok again", proc=daemon.proc)
        assert _uploader_status(save)["threads_alive"] == 5  # 4 workers + housekeeping
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert _all_segments_uploaded(save)
    assert daemon.events("upload_worker_failed") and daemon.events("upload_worker_recovered")
    assert len(bucket_objects(s3, BUCKET)) == len(local_segments(save))


def test_segment_catalogued_by_startup_recovery_is_uploaded(
    moto_server: MotoServer, daemon_factory: DaemonFactory
) -> None:
    """Finding 2: a crash between the rename and the catalog row; startup recovery catalogues the file, and the
    reconciliation gives it its upload row: it reaches the bucket like every other segment."""
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    conf = upload_config(s3_cfg(moto_server), creds=("testing", "testing"))
    daemon = daemon_factory(conf, {"CCTV_DAEMON_CRASH_AT": "catalog.before_insert"})
    save = daemon.save_path
    try:
        assert daemon.proc is not None and daemon.proc.wait(60) == -signal.SIGKILL
    finally:
        daemon.close()
    orphan = [s.relative_to(save).as_posix() for s in local_segments(save)]
    assert len(orphan) == 1 and not upload_rows(save)  # a final file, no row of either kind
    daemon = daemon_factory(conf)
    save = daemon.save_path
    try:
        wait_for(lambda: {r["path"]: r["state"] for r in upload_rows(save)}.get(orphan[0]) == "uploaded", 60,
                 "the recovered segment uploaded", proc=daemon.proc)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert daemon.events("uploads_reconciled")
    rows = upload_rows(save)
    assert sorted(r["path"] for r in rows) == sorted(s.relative_to(save).as_posix() for s in local_segments(save))
    key = next(r["s3_key"] for r in rows if r["path"] == orphan[0])
    assert bucket_objects(s3, BUCKET)[key] == (save / orphan[0]).stat().st_size


def test_check_repair_while_running_segment_is_uploaded(
    moto_server: MotoServer, daemon_factory: DaemonFactory
) -> None:
    """Finding 2: a file of ours without a row, catalogued by `check --repair` while the daemon runs, is picked
    up by the incremental reconciliation and uploaded."""
    from cctv_daemon.segments import names

    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    conf = upload_config(s3_cfg(moto_server), creds=("testing", "testing"))
    daemon = daemon_factory(conf)
    save, cfg = daemon.save_path, daemon.config_path
    try:
        wait_for(lambda: len(uploaded(save)) >= 1, 60, "a first upload", proc=daemon.proc)
        src = local_segments(save)[0]
        parsed = names.parse_file_name(src.name, "t1")
        assert parsed is not None
        start = parsed.start - 86400  # yesterday: a file a crash or an operator left without a row
        extra = names.final_path(save, "t1", parsed.feed_id, start, start + 1)
        extra.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, extra)
        os.utime(extra, (time.time() - 120, time.time() - 120))
        rel = extra.relative_to(save).as_posix()
        res = run_cli("check", "--repair", "--config", str(cfg))
        assert "file-without-row" in res.stdout, res.stdout + res.stderr
        wait_for(lambda: {r["path"]: r["state"] for r in upload_rows(save)}.get(rel) == "uploaded", 60,
                 "the repaired segment uploaded", proc=daemon.proc)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    key = object_key(PREFIX, "t1", start, extra.name)
    assert bucket_objects(s3, BUCKET)[key] == extra.stat().st_size


def test_rebuilt_catalog_does_not_upload_again(
    moto_server: MotoServer, daemon_factory: DaemonFactory
) -> None:
    """Decision: the catalog is lost and `check --rebuild` makes it again from the files; at the next start the
    objects already in the bucket (same size) are marked uploaded, not sent again; a missing one is sent."""
    s3 = moto_server.client()
    s3.create_bucket(Bucket=BUCKET)
    conf = upload_config(s3_cfg(moto_server), creds=("testing", "testing"))
    daemon = daemon_factory(conf)
    save, cfg = daemon.save_path, daemon.config_path
    try:
        wait_for(lambda: len(uploaded(save)) >= 3, 60, "3 uploads", proc=daemon.proc)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    first = {r["path"]: r["s3_key"] for r in upload_rows(save)}
    assert all(r["state"] == "uploaded" for r in upload_rows(save))
    listing = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    for f in (save / ".cctv").glob("catalog.sqlite3*"):
        f.unlink()
    res = run_cli("check", "--rebuild", "--config", str(cfg))
    assert "rebuilt" in res.stderr, res.stdout + res.stderr
    assert not upload_rows(save)
    gone = next(iter(first.values()))
    s3.delete_object(Bucket=BUCKET, Key=gone)
    time.sleep(1.1)  # LastModified has 1 s resolution: a re-upload would show
    daemon = daemon_factory(conf)
    save, cfg = daemon.save_path, daemon.config_path
    try:
        wait_for(lambda: all(next((r["state"] for r in upload_rows(save) if r["path"] == p), None) == "uploaded"
                             for p in first), 60, "the rebuilt catalog reconciled", proc=daemon.proc)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    after = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    for key, modified in listing.items():
        if key != gone:
            assert after[key] == modified, key  # not sent again
    assert gone in after and after[gone] > listing[gone]
    assert _uploader_status(save)["already_in_bucket"] == len(first) - 1


def test_uploads_retry_command_with_daemon_running(
    moto_server: MotoServer, daemon_factory: DaemonFactory
) -> None:
    """`uploads retry`: re-queues failed uploads (here blocked by a missing bucket) while the daemon runs and
    prints their keys; an unknown key is a clear error (exit 2); `uploads list` prints data only."""
    daemon = daemon_factory(upload_config(s3_cfg(moto_server), creds=("testing", "testing")), FAST_BACKOFF,
                            start=False)
    save, cfg = daemon.save_path, daemon.config_path
    res = run_cli("uploads", "retry", "--all", "--config", str(cfg))
    assert res.returncode == 2 and "no catalog" in res.stderr and not res.stdout  # never ran: nothing made
    assert not (save / ".cctv" / "catalog.sqlite3").exists()
    daemon.start()
    s3 = moto_server.client()
    try:
        wait_for(lambda: [r for r in upload_rows(save) if r["state"] == "failed"], 60, "a failed upload",
                 proc=daemon.proc)

        def listed_retrying() -> subprocess.CompletedProcess[str] | None:
            # blocked, not given up; while the uploader probes the store with that row it is `uploading` (every
            # backoff cap, for the probe's few ms): a list taken then rightly shows none, so wait for one
            listed = run_cli("uploads", "list", "--state", "retrying", "--config", str(cfg))
            assert listed.returncode == 0, listed.stderr
            return listed if listed.stdout.strip() else None

        listed = wait_for(listed_retrying, 30, "a retrying row in `uploads list`", proc=daemon.proc)
        keys = [line.split("\t")[0] for line in listed.stdout.splitlines()]
        assert all(k.startswith(f"{PREFIX}/t1/") for k in keys)

        def retried() -> subprocess.CompletedProcess[str] | None:
            res = run_cli("uploads", "retry", keys[0], "--config", str(cfg))
            if res.returncode == 2 and f"{keys[0]} is uploading" in res.stderr:
                return None  # taken by the uploader's probe at that moment: rightly refused, asked again
            return res

        res = wait_for(retried, 30, "`uploads retry KEY` between probes", proc=daemon.proc)
        assert res.returncode == 0 and res.stdout.split() == [keys[0]], res.stderr
        bad = run_cli("uploads", "retry", "no/such/key.mp4", "--config", str(cfg))
        assert bad.returncode == 2 and "unknown upload 'no/such/key.mp4'" in bad.stderr and not bad.stdout
        assert "Traceback" not in bad.stderr
        both = run_cli("uploads", "retry", keys[0], "--all", "--config", str(cfg))
        assert both.returncode == 2 and "not both" in both.stderr
        s3.create_bucket(Bucket=BUCKET)
        wait_for(lambda: len(uploaded(save)) >= 2, 60, "uploads once the bucket exists", proc=daemon.proc)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    res = run_cli("uploads", "retry", "--all", "--config", str(cfg))  # daemon stopped: works too
    assert res.returncode == 0 and "re-queued" in res.stderr


def test_recovered_uploader_shows_no_stale_error_as_current(
    moto_server: MotoServer, daemon_factory: DaemonFactory
) -> None:
    """Acceptance audit: after the bucket appears and uploads succeed again, `status` (human and --json) kept
    showing `last error: NoSuchBucket` as if it were current. Now the error is history: `recovered ... from`."""
    daemon = daemon_factory(upload_config(s3_cfg(moto_server), creds=("testing", "testing")), FAST_BACKOFF)
    save, cfg = daemon.save_path, daemon.config_path
    try:
        failing = wait_for(lambda: "NoSuchBucket" in str((u := _uploader_status(save)).get("last_error")) and u,
                           60, "status: last error NoSuchBucket", proc=daemon.proc)
        assert isinstance(failing["last_error_at"], float) and failing["recovered_error"] is None
        human = run_cli("status", "--config", str(cfg))
        assert human.returncode == 0 and "last error: NoSuchBucket" in human.stdout, human.stderr
        moto_server.client().create_bucket(Bucket=BUCKET)
        before = len(uploaded(save))
        wait_for(lambda: len(uploaded(save)) > before + 1, 60, "uploads after the bucket appeared", proc=daemon.proc)
        ok = wait_for(lambda: (u := _uploader_status(save)).get("state") == "ok" and u, 30, "status: ok again",
                      proc=daemon.proc)
        assert ok["last_error"] is None and ok["last_error_at"] is None, ok
        assert "NoSuchBucket" in ok["recovered_error"] and ok["recovered_at"] >= ok["recovered_error_at"] > 0
        as_json = run_cli("status", "--json", "--config", str(cfg))
        assert as_json.returncode == 0, as_json.stderr
        u = json.loads(as_json.stdout)["components"]["uploader"]
        assert u["last_error"] is None and "NoSuchBucket" in u["recovered_error"]
        human = run_cli("status", "--config", str(cfg))
        line = next(x for x in human.stdout.splitlines() if x.startswith("uploads:"))
        assert "last error" not in line and "recovered" in line and "NoSuchBucket" in line, line
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_uploads_list_and_status_agree_on_failed(
    moto_server: MotoServer, daemon_factory: DaemonFactory
) -> None:
    """Acceptance audit: rows blocked by a store error (a missing bucket) were listed by `uploads list` as
    "N upload(s) failed" while `status` said failed_count 0. Failed means given up after s3Config.maxAttempts;
    the blocked rows are `retrying`. With maxAttempts 1, an object that fails on its own (its path made a
    directory, unreadable as a file even as root, while the bucket works) is given up: `failed` in both."""
    daemon = daemon_factory(upload_config(s3_cfg(moto_server, maxAttempts=1), creds=("testing", "testing")),
                            FAST_BACKOFF)
    save, cfg = daemon.save_path, daemon.config_path
    try:
        wait_for(lambda: [r for r in upload_rows(save) if r["state"] == "failed"], 60,
                 "a row blocked by NoSuchBucket", proc=daemon.proc)
        wait_for(lambda: _uploader_status(save).get("state") == "error", 30, "status: error", proc=daemon.proc)
        assert _uploader_status(save)["failed_count"] == 0

        # the blocked row is `uploading` while the uploader probes the store with it (every backoff cap, for the
        # probe's few ms): a list taken during the probe rightly shows no retrying row, so wait for one between
        def listed_failed() -> subprocess.CompletedProcess[str] | None:
            listed = run_cli("uploads", "list", "--config", str(cfg))
            assert listed.returncode == 0 and listed.stdout == "", listed.stdout
            assert "0 upload(s) failed" in listed.stderr, listed.stderr
            return listed if "more retrying" in listed.stderr else None

        wait_for(listed_failed, 30, "`uploads list`: 0 failed, more retrying", proc=daemon.proc)

        def listed_retrying() -> list[dict[str, Any]]:
            retrying = run_cli("uploads", "list", "--state", "retrying", "--json", "--config", str(cfg))
            assert retrying.returncode == 0, retrying.stderr
            rows: list[dict[str, Any]] = json.loads(retrying.stdout)
            return rows

        shown = wait_for(listed_retrying, 30, "a retrying row in `uploads list`", proc=daemon.proc)
        assert {r["state"] for r in shown} == {"retrying"}
        assert all("NoSuchBucket" in r["last_error"] and r["failures"] == 0 for r in shown)
        # now one object of its own fails once (maxAttempts 1): given up, in status and in the list alike
        victim = save / shown[0]["path"]
        victim.unlink()
        victim.mkdir()
        moto_server.client().create_bucket(Bucket=BUCKET)
        gave_up = wait_for(lambda: (u := _uploader_status(save)).get("failed_count") == 1 and u, 60,
                           "status: 1 failed", proc=daemon.proc)
        assert gave_up["failed_oldest_path"] == shown[0]["path"]
        failed = json.loads(run_cli("uploads", "list", "--json", "--config", str(cfg)).stdout)
        assert [(r["path"], r["state"]) for r in failed] == [(shown[0]["path"], "failed")]
        assert daemon.stop() == 0
    finally:
        daemon.close()
