"""The API's place in the daemon: a stop choice that survives a restart (until started again or the config
changes), a port in use (recording goes on, status says why), and config errors for an unsafe bind."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import DaemonFactory
from tests.integration.test_upload import BUCKET, s3_cfg, upload_config, upload_rows
from tests.support.api import Api
from tests.support.daemon import pattern_camera, run_cli, wait_for
from tests.support.s3 import MotoServer


def test_a_stopped_camera_stays_stopped_across_restarts_until_started(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"cameras": [pattern_camera("keep"), pattern_camera("halt")], "logging": {"file": None}})
    api = Api(d)
    d.wait_segments("halt", 1, 40)
    assert api.post("/api/cameras/halt/stop").status_code == 200
    wait_for(lambda: api.camera("halt")["state"] == "stopped", 20, "halt stopped")
    assert d.stop() == 0
    d.start()
    api = Api(d)
    wait_for(lambda: api.camera("keep")["state"] == "recording", 40, "keep recording after the restart")
    n = len(d.segments("halt"))
    # Still stopped while "keep" records two more segments (time passes, measured by the other camera).
    d.wait_segments("keep", len(d.segments("keep")) + 2, 30)
    assert api.camera("halt")["state"] == "stopped" and len(d.segments("halt")) == n
    assert d.events("camera_stopped_by_command", camera="halt")
    assert api.post("/api/cameras/halt/start").status_code == 200
    d.wait_segments("halt", n + 1, 40)
    assert api.post("/api/cameras/halt/stop").status_code == 200
    # A changed camera config ends the choice: the camera records again after the restart.
    assert d.stop() == 0
    d.config["cameras"][1] = pattern_camera("halt", duration=2)
    d.write_config(d.config)
    d.start()
    api = Api(d)
    wait_for(lambda: api.camera("halt")["state"] == "recording", 40, "halt recording with its new config")


def test_a_port_in_use_leaves_recording_alone_and_shows_in_status(daemon_factory: DaemonFactory) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        d = daemon_factory({"cameras": [pattern_camera("cam")], "api": {"port": port}, "logging": {"file": None}})
        d.wait_segments("cam", 2, 40)
        ev = d.wait_event("api_port_unavailable", 20)[0]
        assert ev["port"] == port and ev["action"] == "recording goes on without the API"
        status = json.loads(d.cli("status", "--json").stdout)
        assert status["components"]["api"]["state"] == "failed"
        assert str(port) in status["components"]["api"]["error"]
        assert "api: failed" in d.cli("status").stdout
        assert d.cli("ui-url").returncode == 4  # not listening: no link
        assert d.stop() == 0


def test_binding_beyond_loopback_needs_tls(tmp_path: Path) -> None:
    def check(api: dict[str, object]) -> tuple[int, str]:
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps({"cameras": [pattern_camera("c")], "storageConfig": {"savePath": str(tmp_path)},
                                   "api": api}))
        res = run_cli("check-config", "--config", str(cfg))
        return res.returncode, res.stderr

    code, err = check({"host": "0.0.0.0"})
    assert code == 2 and "api.host" in err and "Traceback" not in err
    code, err = check({"host": "0.0.0.0", "tlsCert": str(tmp_path / "c.pem")})
    assert code == 2 and "api.tlsKey" in err
    assert check({"host": "0.0.0.0", "behindTlsProxy": True})[0] == 0
    assert check({"host": "::1"})[0] == 0
    assert check({"host": "localhost", "port": 8081})[0] == 0
    code, err = check({"port": 70000})
    assert code == 2 and "api.port" in err


def test_a_segment_removed_after_upload_plays_from_s3(moto_server: MotoServer,
                                                     daemon_factory: DaemonFactory) -> None:
    moto_server.client().create_bucket(Bucket=BUCKET)
    d = daemon_factory(upload_config(s3_cfg(moto_server), creds=("testing", "testing"),
                                     storage={"clearAfterUpload": True}))
    api = Api(d)
    seg_id = wait_for(lambda: _deleted_uploaded(d.save_path), 60, "a segment uploaded and cleared locally")
    r = api.get(f"/api/segments/{seg_id}/video", "viewer", follow_redirects=False)
    assert r.status_code == 307, r.text
    location = r.headers["location"]
    assert location.startswith(moto_server.endpoint) and "Signature" in location  # presigned
    assert "testing" not in location.split("?")[0]  # no credential in the path
    body = httpx.get(location, timeout=30)
    assert body.status_code == 200 and body.content[4:8] == b"ftyp"
    assert d.stop() == 0


def test_uploads_and_deletions_arrive_on_the_event_stream(moto_server: MotoServer,
                                                          daemon_factory: DaemonFactory) -> None:
    """SegmentUploaded (after the verified upload) and SegmentDeleted (clearAfterUpload, nothing lost) reach
    GET /api/events with the segment's opaque id, camera, start and end; no path or S3 key."""
    from cctv_daemon.api.ids import segment_id
    from cctv_daemon.catalog.store import SegmentRow

    moto_server.client().create_bucket(Bucket=BUCKET)
    d = daemon_factory(upload_config(s3_cfg(moto_server), creds=("testing", "testing"),
                                     storage={"clearAfterUpload": True}))
    api = Api(d)
    events: list[tuple[str, dict[str, Any]]] = []
    raw: list[str] = []
    connected = threading.Event()

    def listen() -> None:
        kind = ""
        with api.client("viewer") as c, c.stream("GET", "/api/events", timeout=60) as r:
            connected.set()
            for line in r.iter_lines():
                raw.append(line)
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
                    if kind == "segment_deleted":
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert connected.wait(30)
    t.join(90)
    kinds = [k for k, _ in events]
    assert "segment_uploaded" in kinds and "segment_deleted" in kinds, kinds
    deleted = next(e for k, e in events if k == "segment_deleted")
    up = next(e for k, e in events if k == "segment_uploaded" and e["id"] == deleted["id"])
    assert kinds.index("segment_uploaded") < kinds.index("segment_deleted")
    assert up["camera"] == deleted["camera"] == "t1" and up["end"] > up["start"] > 0 and up["size"] > 0
    assert deleted["reason"] == "uploaded (clearAfterUpload)"
    assert deleted["uploaded"] is True and deleted["footage_lost"] is False
    assert (deleted["start"], deleted["end"]) == (up["start"], up["end"])
    # The id is the one /api/segments and /api/segments/{id} use.
    assert up["id"] == segment_id(SegmentRow("", "t1", up["feed_id"], up["start"], up["end"], up["size"]))
    assert api.get(f"/api/segments/{up['id']}", "viewer").status_code == 200
    text = "\n".join(raw)
    assert ".mp4" not in text and all("key" not in e and "rel_path" not in e for _, e in events)
    assert d.stop() == 0


def _deleted_uploaded(save: Path) -> str | None:
    """The opaque id of a segment deleted locally after a verified upload, read from the catalog."""
    from cctv_daemon.api.ids import segment_id
    from cctv_daemon.catalog.store import SegmentRow

    for r in upload_rows(save):
        if r["state"] != "uploaded":
            continue
        conn = sqlite3.connect(f"file:{save / '.cctv' / 'catalog.sqlite3'}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute('SELECT camera, feed_id, start, "end", size, state FROM segments WHERE path = ?',
                               (r["path"],)).fetchone()
        finally:
            conn.close()
        if row and row[5] == "deleted":
            return segment_id(SegmentRow(r["path"], row[0], row[1], row[2], row[3], row[4]))
    return None
