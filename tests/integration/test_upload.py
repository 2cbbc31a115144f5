"""The real daemon uploading to a real S3 endpoint (moto_server over HTTP): happy path, outage, SIGKILL in the
middle of an upload, clearAfterUpload with a missing bucket, wrong credentials; no secret in any log line."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.upload.uploader import object_key
from tests.conftest import DaemonFactory
from tests.support.daemon import wait_for
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
