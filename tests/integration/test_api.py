"""The HTTP API against a real daemon (real ffmpeg `test` cameras): auth everywhere but health, roles, every
endpoint, Range, export, stop/start/record changing what is recorded, metrics, SSE, path traversal, no secret in
any response, CORS off, sign-in link + cookie + CSRF. One daemon serves the read-mostly tests of this module."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import Api
from tests.support.daemon import DaemonProc, pattern_camera, wait_for

PASSWORD = "api-s3cret-camera-pw"
CAMS = [pattern_camera("c1"), pattern_camera("c2"), pattern_camera("od", mode="onDemand"),
        # never reachable (nothing listens on port 9): only here so that its password must never show
        {"cameraName": "locked", "ipAddress": "127.0.0.1", "port": 9, "userName": "u", "password": PASSWORD}]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = DaemonProc(tmp_path_factory.mktemp("api"), {"cameras": CAMS, "logging": {"file": None}})
    d.start()
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def api(daemon: DaemonProc) -> Api:
    a = Api(daemon)
    wait_for(lambda: a.get("/api/health", None).status_code == 200, 40, "API healthy", proc=daemon.proc)
    daemon.wait_segments("c1", 3, 40)
    return a


def _concrete(path: str) -> str:
    return (path.replace("{name}", "c1").replace("{seg_id}", "YzF8MXwy").replace("{rid}", "1")
            .replace("{export_id}", "abc").replace("{file}", "init.mp4"))


def test_health_needs_no_token_and_everything_else_does(api: Api) -> None:
    h = api.get("/api/health", None)
    assert h.status_code == 200 and h.json()["ok"] is True and h.json()["phase"] == "running"
    spec = api.get("/openapi.json", None).json()
    checked = 0
    for path, ops in spec["paths"].items():
        for method in ops:
            if path in ("/api/health", "/api/signin"):
                continue
            with api.client(None) as c:
                r = c.request(method.upper(), _concrete(path), json={"minutes": 1, "keep": True})
                assert r.status_code == 401, (method, path, r.status_code)
                assert r.headers.get("www-authenticate") == "Bearer"
                r = c.request(method.upper(), _concrete(path), headers={"Authorization": "Bearer wrong"})
                assert r.status_code == 401, (method, path, r.status_code)
            checked += 1
    assert checked >= 15
    assert api.get("/api/signin", None, params={"code": "forged.x"}).status_code == 401
    assert api.get("/docs", None).status_code == 200  # the OpenAPI page itself is public
    page = api.get("/", None)
    assert page.status_code == 200 and "cctv-daemon" in page.text


def test_viewer_may_read_but_not_act(api: Api) -> None:
    for path in ("/api/status", "/api/cameras", "/api/cameras/c1", "/api/segments", "/metrics"):
        assert api.get(path, "viewer").status_code == 200, path
    with api.client("viewer") as c:
        for method, path, body in [("POST", "/api/cameras/c1/stop", None), ("POST", "/api/cameras/c1/start", None),
                                   ("POST", "/api/cameras/od/record", {"minutes": 1}),
                                   ("DELETE", "/api/segments/YzF8MXwy", None),
                                   ("PUT", "/api/recordings/1/keep", {"keep": True})]:
            r = c.request(method, path, json=body)
            assert r.status_code == 403, (path, r.status_code)
    assert api.camera("c1")["state"] == "recording"  # nothing was stopped


def test_the_date_header_follows_the_clock_though_the_server_wakes_once_a_second(api: Api) -> None:
    """The API's server refreshes its Date header from a timer once a second instead of uvicorn's 10 Hz
    housekeeping task: responses still carry the current second (within the header's 1 s resolution)."""
    def date_lag() -> float:
        before = time.time()
        sent = parsedate_to_datetime(api.get("/api/health", None).headers["date"]).timestamp()
        assert sent <= time.time() + 0.01, "a Date header from the future"
        return before - sent

    start = time.time()
    wait_for(lambda: parsedate_to_datetime(api.get("/api/health", None).headers["date"]).timestamp() >= start + 2,
             10, "the Date header moving on")
    assert date_lag() < 2.5  # at most the timer's second plus the header's whole-second rounding (and load)


def test_status_is_status_json_and_cameras_are_listed(api: Api, daemon: DaemonProc) -> None:
    s = api.get("/api/status", "viewer").json()
    cli = json.loads(daemon.cli("status", "--json").stdout)
    assert set(s) == set(cli) and s["pid"] == cli["pid"] and set(s["cameras"]) == set(cli["cameras"])
    assert s["components"]["api"]["state"] == "listening" and s["components"]["api"]["url"] == api.url
    cams = {c["name"]: c for c in api.get("/api/cameras", "viewer").json()["cameras"]}
    assert set(cams) == {"c1", "c2", "od", "locked"}
    assert cams["c1"]["state"] == "recording" and cams["od"]["state"] == "stopped" and cams["od"]["mode"] == "onDemand"
    assert api.get("/api/cameras/nope", "viewer").status_code == 404


def test_segments_with_gaps_video_range_and_signed_url(api: Api, daemon: DaemonProc) -> None:
    now = time.time()
    listing = api.segments(camera="c1", **{"from": str(now - 3600), "to": str(now)})
    segs = listing["segments"]
    assert len(segs) >= 3 and all(s["camera"] == "c1" for s in segs)
    assert listing["gaps"] and listing["gaps"][0]["start"] == pytest.approx(now - 3600)  # before the first segment
    assert all("/" not in s["id"] and ".mp4" not in s["id"] for s in segs)  # opaque ids, never paths
    iso = api.segments(camera="c1", **{"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))})
    assert [s["id"] for s in iso["segments"]][:3] == [s["id"] for s in segs][:3]
    seg = api.get(f"/api/segments/{segs[0]['id']}", "viewer").json()
    assert seg["id"] == segs[0]["id"] and seg["size"] > 0
    assert seg["codec"].startswith("avc1.") and api.camera("c1")["codec"].startswith("avc1.")  # H.264 `test` camera
    whole = api.get(seg["video_url"], "viewer")
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.headers.get("accept-ranges") == "bytes" and len(whole.content) == seg["size"]
    part = api.get(seg["video_url"], "viewer", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{seg['size']}"
    tail = api.get(seg["video_url"], "viewer", headers={"Range": f"bytes={seg['size'] - 50}-"})  # seeking to the end
    assert tail.status_code == 206 and tail.content == whole.content[-50:]
    signed = api.get(seg["signed_video_url"], None)
    assert signed.status_code == 200 and signed.content == whole.content
    forged = seg["signed_video_url"].replace(segs[0]["id"], segs[1]["id"])
    assert api.get(forged, None).status_code == 401  # a signature is for one segment only
    assert api.get(seg["video_url"], None).status_code == 401
    assert api.get("/api/segments", "viewer", params={"from": "yesterday"}).status_code == 422
    assert listing["next"] is None


def test_segments_in_pages(api: Api, daemon: DaemonProc) -> None:
    """`limit` per page; following `next` gives the rest, the same segments and gaps as one page."""
    daemon.wait_segments("c1", 5, 40)
    now = time.time()
    done = api.segments(camera="c1", **{"from": str(now - 3600)})["segments"]
    # up to the end of the second-to-last segment: everything starting before it has finished (no flake)
    window = {"camera": "c1", "from": str(now - 3600), "to": str(done[-2]["end"])}
    whole = api.segments(**window)
    assert len(whole["segments"]) >= 3 and whole["next"] is None
    segs, gaps, cursor, n = [], [], None, 0
    while True:
        page = api.segments(**window, limit=2, **({"cursor": cursor} if cursor else {}))
        segs += page["segments"]
        gaps += page["gaps"]
        n += 1
        cursor = page["next"]
        if cursor is None:
            break
        assert len(page["segments"]) == 2
    assert n >= 2 and [s["id"] for s in segs] == [s["id"] for s in whole["segments"]]
    assert [(g["start"], g["end"]) for g in gaps] == [(g["start"], g["end"]) for g in whole["gaps"]]
    for bad in ({"limit": 0}, {"limit": 10_001}, {"cursor": "not-a-cursor"}):
        r = api.get("/api/segments", "viewer", params={**window, **bad})
        assert r.status_code == 422 and "Traceback" not in r.text, (bad, r.text)


def _probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:format_tags=creation_time",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout
    data: dict[str, Any] = json.loads(out)["format"]
    return data


def test_export_streams_one_playable_clip_of_only_its_range(api: Api, daemon: DaemonProc, tmp_path: Path) -> None:
    daemon.wait_segments("c1", 6, 40)
    segs = api.segments(camera="c1")["segments"]
    start, end = segs[1]["start"] + 0.2, segs[4]["end"] - 0.2  # inside the recorded footage
    out = tmp_path / "clip.mp4"
    with api.client("viewer") as c, c.stream("GET", "/api/export", params={"camera": "c1", "from": str(start),
                                                                           "to": str(end)}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        assert "content-length" not in r.headers  # streamed while it is made
        export_id = r.headers["x-export-id"]
        with out.open("wb") as f:
            for chunk in r.iter_bytes():
                f.write(chunk)
    info = _probe(out)
    # Only its range, to within one keyframe interval (1 s here): how precisely the cut falls is catalog/export.py's
    # business (its plan() is what the API streams).
    assert end - start - 1.1 <= float(info["duration"]) <= end - start + 1.1
    assert info["tags"]["creation_time"].startswith(time.strftime("%Y-%m-%d", time.gmtime(start)))
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True,
                             text=True, check=False)
    assert decoded.returncode == 0 and not decoded.stderr.strip()  # plays: every frame decodes
    digest = api.get(f"/api/export/{export_id}/sha256", "viewer").json()
    import hashlib

    assert digest["complete"] and digest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest["bytes"] == out.stat().st_size
    r = api.get("/api/export", "viewer", params={"camera": "c1", "from": "1000", "to": "2000"})
    assert r.status_code == 404 and "no footage" in r.json()["detail"]


def test_snapshot_jpg_is_the_latest_keyframe(api: Api) -> None:
    r = api.get("/api/cameras/c1/snapshot.jpg", "viewer")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert api.get("/api/cameras/locked/snapshot.jpg", "viewer").status_code == 404  # no footage yet


def test_metrics_parse_with_prometheus_client(api: Api) -> None:
    r = api.get("/metrics", "viewer")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    def value(name: str, **labels: str) -> float:
        return next(s.value for s in fams[name].samples if all(s.labels.get(k) == v for k, v in labels.items()))
    assert value("cctv_camera_state", camera="c1", state="recording") == 1.0
    assert value("cctv_camera_segments_recorded", camera="c1") >= 3  # counters: the family drops "_total"
    assert value("cctv_camera_stored_bytes", camera="c1") > 0
    assert value("cctv_camera_recorded_seconds", camera="c1") > 0
    assert value("cctv_wall_seconds") >= value("cctv_camera_recorded_seconds", camera="c1") - 2
    assert value("cctv_camera_last_segment_end_timestamp_seconds", camera="c1") > time.time() - 60
    assert value("cctv_disk_free_bytes") > 0 and value("cctv_disk_used_bytes") > 0
    for name in ("cctv_camera_restarts", "cctv_camera_stalls", "cctv_upload_queue_depth", "cctv_uploads",
                 "cctv_deletions", "cctv_footage_lost_segments"):
        assert name in fams, name


def test_record_on_demand_with_a_label(api: Api, daemon: DaemonProc) -> None:
    assert api.post("/api/cameras/od/record", json={"minutes": 0}).status_code == 422
    assert api.post("/api/cameras/od/record", json={"minutes": 1441}).status_code == 422
    assert not daemon.segments("od")  # onDemand: nothing recorded before a request
    r = api.post("/api/cameras/od/record", json={"minutes": 1, "label": "INC-42"})
    assert r.status_code == 200, r.text
    first_until, rid = r.json()["until"], r.json()["recording_id"]
    r2 = api.post("/api/cameras/od/record", json={"minutes": 2, "label": "INC-42"})
    assert r2.json()["until"] > first_until + 50  # a second request extends to the later end
    cam = api.camera("od")
    assert cam["record_label"] == "INC-42" and 60 < cam["record_left_s"] <= 120
    status = daemon.cli("status")
    assert "od: recording on request [INC-42]" in status.stdout
    daemon.wait_segments("od", 2, 40)
    labelled = wait_for(lambda: (s := api.segments(label="INC-42")["segments"]) and len(s) >= 2 and s, 20,
                        "labelled segments")
    assert all(s["camera"] == "od" and s["labels"] == ["INC-42"] for s in labelled)
    assert not api.segments(label="other")["segments"]
    recs = api.get("/api/recordings", "viewer", params={"label": "INC-42"}).json()["recordings"]
    assert {r["id"] for r in recs} >= {rid}
    k = api.client().put(f"/api/recordings/{rid}/keep", json={"keep": True})
    assert k.status_code == 200 and k.json()["keep"] is True
    audit = [json.loads(line) for line in (daemon.state_dir / "audit.jsonl").read_text().splitlines()]
    assert any(a["action"] == "record" and a["target"] == "od" and a["who"] == "admin (bearer)"
               and a["label"] == "INC-42" for a in audit)


def _recording_camera(d: DaemonProc, camera: str) -> bool:
    """An ffmpeg of this daemon writes this camera's staging folder (its argv names .../staging/{camera}/...)."""
    needle = f"{os.sep}{camera}{os.sep}"
    for p in d.ffmpegs():
        try:
            if any(needle in arg for arg in p.cmdline()):
                return True
        except psutil.Error:  # it exited meanwhile
            continue
    return False


def test_stop_and_start_change_what_is_recorded_and_stream_events(api: Api, daemon: DaemonProc) -> None:
    events: list[str] = []
    connected = threading.Event()

    def listen() -> None:
        with api.client("viewer") as c, c.stream("GET", "/api/events", timeout=60) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                connected.set()
                events.append(line)
                if '"new": "stopped"' in line and '"camera": "c2"' in line:
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert connected.wait(20)
    r = api.post("/api/cameras/c2/stop")
    assert r.status_code == 200, r.text
    t.join(40)
    assert any(line == "event: camera_state" for line in events)
    assert any('"camera": "c2"' in line and '"new": "stopped"' in line for line in events)
    wait_for(lambda: api.camera("c2")["state"] == "stopped", 20, "c2 stopped")
    # The segment in flight has landed: c2's ffmpeg is gone and nothing of it is left in staging.
    wait_for(lambda: not _recording_camera(daemon, "c2"), 20, "c2's ffmpeg gone")
    wait_for(lambda: not list(daemon.save_path.glob("**/staging/c2/*.mp4")), 20, "c2's last segment handed off")
    n = len(daemon.segments("c2"))
    # Stopped: nothing more recorded while c1 records two more segments (time passes, measured by the other camera).
    daemon.wait_segments("c1", len(daemon.segments("c1")) + 2, 30)
    assert len(daemon.segments("c2")) == n
    choices = json.loads((daemon.state_dir / "camera-choices.json").read_text())
    assert "c2" in choices["stopped"]
    assert api.post("/api/cameras/c2/start").status_code == 200
    daemon.wait_segments("c2", n + 2, 30)
    assert "c2" not in json.loads((daemon.state_dir / "camera-choices.json").read_text())["stopped"]
    actions = [(a["action"], a["target"]) for a in map(json.loads, (daemon.state_dir / "audit.jsonl").open())]
    assert ("stop", "c2") in actions and ("start", "c2") in actions


def test_delete_goes_through_the_catalog(api: Api, daemon: DaemonProc) -> None:
    seg = api.segments(camera="c1")["segments"][0]
    files = daemon.segments("c1")
    r = api.client().delete(f"/api/segments/{seg['id']}")
    assert r.status_code == 200 and r.json() == {"deleted": True}
    assert len(daemon.segments("c1")) >= len(files) - 1
    assert seg["id"] not in [s["id"] for s in api.segments(camera="c1")["segments"]]
    assert api.get(seg["video_url"], "viewer").status_code == 404
    assert api.client().delete(f"/api/segments/{seg['id']}").status_code == 404
    audit = [json.loads(line) for line in (daemon.state_dir / "audit.jsonl").read_text().splitlines()]
    assert any(a["action"] == "delete" and a["target"] == seg["id"] and a["result"] == "ok"
               and a["who"] == "admin (bearer)" and a["camera"] == "c1" for a in audit)


TRAVERSALS = ["..", "../..", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "....//....//etc", "c1%00", "%2Fetc%2Fpasswd",
              "..\\..\\x", "Li4vLi4vZXRjL3Bhc3N3ZA"]


def test_path_traversal_never_reaches_a_file(api: Api) -> None:
    with api.client() as c:
        for bad in TRAVERSALS:
            for path in (f"/api/cameras/{bad}", f"/api/cameras/{bad}/snapshot.jpg", f"/api/segments/{bad}",
                         f"/api/segments/{bad}/video", f"/api/export/{bad}/sha256"):
                r = c.get(path)
                assert b"root:" not in r.content
                if r.status_code == 200 and not r.request.url.path.startswith(path.split(bad)[0] + bad):
                    continue  # the client resolved the dot segments itself: the server never saw them
                assert r.status_code in (404, 422, 405), (path, r.status_code)
            r = c.get("/api/segments", params={"camera": bad})
            assert r.status_code in (404, 422)
            r = c.get("/api/export", params={"camera": bad, "from": "1", "to": "2"})
            assert r.status_code in (404, 422)
            assert c.post(f"/api/cameras/{bad}/stop").status_code in (404, 405, 422)
        assert c.get("/../../etc/passwd").status_code == 404
        assert c.get("/%2e%2e/%2e%2e/etc/passwd").status_code == 404


def test_no_secret_in_any_response(api: Api) -> None:
    secrets = [PASSWORD, *api.secrets]
    with api.client("viewer") as c:
        bodies = [c.get(p).text for p in ("/api/status", "/api/cameras", "/api/cameras/locked", "/metrics",
                                          "/api/segments", "/openapi.json", "/docs", "/", "/api/session",
                                          "/api/recordings")]
    bodies.append(api.get("/api/health", None).text)
    for body in bodies:
        for secret in secrets:
            assert secret not in body


def test_docs_are_served_offline(api: Api) -> None:
    """/docs names no other host: Swagger UI's script, stylesheet and icon are served by the daemon itself
    (docs_ui.py), without a token like the page; the browser test renders it with the network blocked."""
    r = api.get("/docs", None)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    refs = re.findall(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)["']""", r.text)
    assert len(refs) >= 4, refs  # stylesheet, icon, script, the OpenAPI document
    assert not re.search(r"(?i)https?:|//[a-z0-9]", r.text), "an absolute URL in /docs"
    types = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
    for ref in refs:
        assert ref.startswith("/"), ref
        asset = api.get(ref, None)
        assert asset.status_code == 200, (ref, asset.status_code)
        assert types[Path(ref).suffix] in asset.headers["content-type"] and len(asset.content) > 200, ref
    assert any(ref.endswith("swagger-ui-bundle.js") for ref in refs)
    assert api.get("/docs-assets/../../api/auth.py", None).status_code == 404


def test_cors_is_off_by_default(api: Api) -> None:
    with api.client(None) as c:
        r = c.options("/api/status", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in r.headers
        r = c.get("/api/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_signin_link_cookie_session_and_csrf(api: Api, daemon: DaemonProc) -> None:
    res = daemon.cli("ui-url")
    assert res.returncode == 0, res.stderr
    link = res.stdout.strip()
    assert link.startswith(api.url + "/api/signin?code=") and api.admin_token not in link
    with httpx.Client(timeout=30) as browser:
        r = browser.get(link, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get(link).status_code == 401  # one-time
        s = browser.get(api.url + "/api/session")
        assert s.status_code == 200 and s.json()["role"] == "admin"
        csrf = s.json()["csrf"]
        assert browser.post(api.url + "/api/cameras/c1/start").status_code == 403  # no CSRF header
        r = browser.post(api.url + "/api/cameras/c1/start", headers={"X-CSRF-Token": "wrong"})
        assert r.status_code == 403
        r = browser.post(api.url + "/api/cameras/c1/start", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json()["camera"] == "c1"
    viewer_link = daemon.cli("ui-url", "--viewer").stdout.strip()
    with httpx.Client(timeout=30, base_url=api.url) as browser:
        browser.get(viewer_link)
        csrf = browser.get("/api/session").json()["csrf"]
        assert browser.post("/api/cameras/c1/stop", headers={"X-CSRF-Token": csrf}).status_code == 403
    assert api.camera("c1")["state"] == "recording"
    mode = (daemon.state_dir / "api-tokens.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_raw_dot_segments_reach_no_file(api: Api) -> None:
    """http.client sends the path as written (httpx would resolve the dot segments first)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(api.url)
    for raw in ("/api/segments/../../../etc/passwd/video", "/../../../../etc/passwd", "/api/cameras/../../x",
                "/static/../../../../etc/passwd", "/api/segments/..%2f..%2fetc%2fpasswd/video"):
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
        conn.request("GET", raw, headers={"Authorization": f"Bearer {api.admin_token}"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status in (404, 422), (raw, resp.status)
        assert b"root:" not in body
