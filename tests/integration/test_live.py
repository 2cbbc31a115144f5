"""The live view against a real daemon (real ffmpeg, `test` cameras: 1 keyframe a second): the playlist served by
the API updates and its newest fragment is at most 5 s behind the wall clock; auth and names; and a live folder
that fills up or disappears never stops or gaps the recording (same segments, no gap, no restart, same ffmpeg)
as a camera without live view in the same daemon."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import Api
from tests.support.daemon import DaemonProc, pattern_camera, wait_for

MAX_BEHIND_S = 5.0


def _live_folder(live_root: Path, camera: str) -> Path:
    found = list(live_root.glob(f"cctv-daemon-*/*/{camera}"))
    assert len(found) == 1, found
    return found[0]


def _playlist(api: Api, camera: str, **kw: Any) -> tuple[int, list[tuple[float, str]]]:
    r = api.get(f"/api/cameras/{camera}/live.m3u8", "viewer", **kw)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
    m = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", r.text)
    assert m is not None, r.text
    entries = re.findall(r"#EXTINF:([\d.]+),\n(\S+)", r.text)
    assert entries, r.text
    return int(m.group(1)), [(float(d), uri) for d, uri in entries]


@pytest.fixture
def live_daemon(tmp_path: Path) -> Iterator[tuple[DaemonProc, Api, Path]]:
    live_root = tmp_path / "live"
    live_root.mkdir()
    d = DaemonProc(tmp_path, {"cameras": [pattern_camera("cam"), pattern_camera("nolive", liveView=False)],
                              "api": {"port": 0, "liveDir": str(live_root), "liveView": True},
                              "logging": {"file": None}})
    d.start()
    try:
        yield d, Api(d), live_root
    finally:
        d.close()


@pytest.mark.timing
def test_live_playlist_updates_and_is_at_most_5s_behind(live_daemon: tuple[DaemonProc, Api, Path]) -> None:
    d, api, live_root = live_daemon
    cam = wait_for(lambda: (c := api.camera("cam"))["state"] == "recording" and c, 60, "cam recording", proc=d.proc)
    assert cam["live_url"] == "/api/cameras/cam/live.m3u8"
    assert api.camera("nolive")["live_url"] is None
    assert api.get("/api/cameras/nolive/live.m3u8", "viewer").status_code == 404
    wait_for(lambda: api.get("/api/cameras/cam/live.m3u8", "viewer").status_code == 200, 30, "a live playlist")
    folder = _live_folder(live_root, "cam")
    seqs: list[int] = []
    behind: list[float] = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        seq, entries = _playlist(api, "cam")
        seqs.append(seq)
        duration, uri = entries[-1]
        assert uri.startswith("live/live") and uri.endswith(".m4s"), uri
        frag = api.get(f"/api/cameras/cam/{uri}", "viewer")
        assert frag.status_code == 200 and frag.headers["content-type"] == "video/iso.segment"
        assert len(frag.content) > 100
        # the newest fragment's first frame: written out when the fragment was finished, `duration` earlier
        finished = (folder / uri.removeprefix("live/")).stat().st_mtime
        behind.append(time.time() - finished + duration)
        time.sleep(0.5)
    assert seqs[-1] >= seqs[0] + 4, f"the playlist did not move on: {seqs}"
    assert max(behind) <= MAX_BEHIND_S, f"newest fragment behind the wall clock: {behind}"
    init = api.get("/api/cameras/cam/live/init.mp4", "viewer")
    assert init.status_code == 200 and init.content[4:8] == b"ftyp"
    # bounded: a few fragments on disk (playlist, init, ~6 fragments, maybe a .tmp being written)
    assert len(list(folder.iterdir())) <= 10, sorted(p.name for p in folder.iterdir())
    print(f"live view behind the wall clock: max {max(behind):.2f} s, median {sorted(behind)[len(behind) // 2]:.2f} s")


def test_live_auth_signed_url_and_names(live_daemon: tuple[DaemonProc, Api, Path]) -> None:
    d, api, _live_root = live_daemon
    wait_for(lambda: api.get("/api/cameras/cam/live.m3u8", "viewer").status_code == 200, 60, "a live playlist",
             proc=d.proc)
    assert api.get("/api/cameras/cam/live.m3u8", None).status_code == 401
    assert api.get("/api/cameras/cam/live/init.mp4", None).status_code == 401
    signed = api.camera("cam")["signed_live_url"]
    assert signed.startswith("/api/cameras/cam/live.m3u8?sig=")
    with api.client(None) as c:
        r = c.get(signed)
        assert r.status_code == 200, r.text
        sig = signed.split("?sig=", 1)[1]
        uris = re.findall(r"^(live/\S+)$", r.text, re.M) + re.findall(r'URI="([^"]+)"', r.text)
        assert uris and all(u.endswith(f"?sig={sig}") for u in uris), r.text
        assert c.get(f"/api/cameras/cam/{uris[0]}").status_code == 200  # the fragments carry the signature on
        assert c.get(f"/api/cameras/nolive/live.m3u8?sig={sig}").status_code == 401  # signed for another camera
    for bad in ("..%2F..%2Fconfig.json", "live.m3u8.tmp", "init.mp4%00", "x.m4s", "live1.m4s%2F..%2F..%2Fapi.json"):
        assert api.get(f"/api/cameras/cam/live/{bad}", "viewer").status_code in (404, 422), bad
    assert api.get("/api/cameras/..%2Fcam/live.m3u8", "viewer").status_code == 404
    with api.client("viewer") as c:
        head = c.head("/api/cameras/cam/live.m3u8")
        assert head.status_code == 200 and head.content == b""


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False).returncode == 0


def _fill(folder: Path) -> None:
    with (folder / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _segments(api: Api, camera: str, start: float, end: float) -> dict[str, Any]:
    return api.segments(camera=camera, **{"from": str(start), "to": str(end)})


def test_a_broken_live_folder_never_stops_or_gaps_recording(tmp_path: Path) -> None:
    """Live view on a 1 MB tmpfs: filled to the last byte, then the camera's folder replaced by a file. The camera
    with live view records exactly as the one without: no restart, same ffmpeg, no gap, same segment count."""
    live_root = tmp_path / "live"
    mounted = _mount_tmpfs(live_root, "1m")  # root in tests and CI; else the folder part still runs
    d = DaemonProc(tmp_path, {"cameras": [pattern_camera("cam"), pattern_camera("ref", liveView=False)],
                              "api": {"port": 0, "liveDir": str(live_root), "liveView": True},
                              "logging": {"file": None}})
    d.start()
    try:
        api = Api(d)
        wait_for(lambda: api.get("/api/cameras/cam/live.m3u8", "viewer").status_code == 200, 60,
                 "a live playlist", proc=d.proc)
        d.wait_segments("cam", 2, 30)
        pids = {p.pid for p in d.ffmpegs()}
        assert len(pids) == 2
        t0 = time.time()
        if mounted:
            _fill(live_root)  # every write of the live output now fails with ENOSPC
            time.sleep(6)  # the fault's duration (not a wait for a condition)
            (live_root / "filler").unlink()
        folder = _live_folder(live_root, "cam")
        shutil.rmtree(folder)
        folder.write_bytes(b"not a folder")  # the live output cannot open its next fragment: the tee drops it
        time.sleep(6)  # the fault's duration (not a wait for a condition)
        assert api.get("/api/cameras/cam/live.m3u8", "viewer").status_code == 404  # the live view is gone...
        t1 = time.time()
        # ... and the segments holding t1 are finished and catalogued, for both cameras.
        wait_for(lambda: all(any(s["end"] >= t1 for s in _segments(api, name, t1 - 30, t1 + 30)["segments"])
                             for name in ("cam", "ref")), 20, "segments past t1 catalogued", proc=d.proc)
        assert {p.pid for p in d.ffmpegs()} == pids, "an ffmpeg was restarted"
        for name in ("cam", "ref"):
            c = api.camera(name)
            assert c["state"] == "recording" and c["restarts"] == 0 and c["stalls"] == 0, c
        got = {name: _segments(api, name, t0, t1) for name in ("cam", "ref")}
        for name, seg in got.items():
            assert seg["gaps"] == [], (name, seg["gaps"])
        counts = {name: len(seg["segments"]) for name, seg in got.items()}
        assert abs(counts["cam"] - counts["ref"]) <= 1 and counts["cam"] >= (t1 - t0) - 2, counts
        assert "Traceback" not in d.output()
        if mounted:
            assert "No space left on device" in d.output() or "Slave muxer #1 failed" in d.output(), d.log_tail()
    finally:
        d.close()
        if mounted:
            subprocess.run(["umount", "-l", str(live_root)], check=False)
