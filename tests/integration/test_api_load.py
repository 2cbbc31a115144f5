"""Recording coverage stays >= 0.999 while the API serves concurrent playback (Range requests), exports and the
event stream (issue 13, Tests). Real RTSP server cameras, real ffmpeg, a real daemon; the clients are threads of
this test hammering the API for LOAD_S seconds while both cameras record."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.conftest import DaemonFactory
from tests.integration.test_recording import assert_contiguous, rtsp_camera
from tests.support.api import Api
from tests.support.daemon import wait_for
from tests.support.media import coverage
from tests.support.rtsp import RtspServer

LOAD_S = 40.0
CAMERAS = ("gate", "yard")


class Load:
    """Client threads that loop until `stop` is set; every response is counted by kind and status."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.sse_events: Counter[str] = Counter()
        self.sse_open = threading.Event()
        self._lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def fail(self, what: str) -> None:
        with self._lock:
            self.errors.append(what)

    def _segments(self, c: httpx.Client, camera: str) -> list[dict[str, object]]:
        r = c.get("/api/segments", params={"camera": camera})
        r.raise_for_status()
        segs: list[dict[str, object]] = r.json()["segments"]
        return segs

    def playback(self, seed: int) -> None:
        """A player seeking around: Range requests into random segments (206), now and then a whole file."""
        rnd = random.Random(seed)
        with self.api.client("viewer") as c:
            while not self.stop.is_set():
                segs = self._segments(c, rnd.choice(CAMERAS))
                seg = rnd.choice(segs)
                size = int(str(seg["size"]))
                first = rnd.randrange(0, max(1, size - 1))
                last = min(size - 1, first + rnd.choice((4095, 65535, 262143)))
                r = c.get(str(seg["video_url"]), headers={"Range": f"bytes={first}-{last}"})
                if r.status_code == 206 and len(r.content) == last - first + 1:
                    self.count("range_206")
                else:
                    self.fail(f"range {first}-{last} of {size}: {r.status_code} {len(r.content)} bytes")
                if rnd.random() < 0.2:
                    r = c.get(str(seg["video_url"]))
                    ok = r.status_code == 200 and len(r.content) == size
                    self.count("full_200") if ok else self.fail(f"full file: {r.status_code}")

    def exports(self, seed: int) -> None:
        """Exports of 2..8 s of recorded footage, each read to its end."""
        rnd = random.Random(seed)
        with self.api.client("viewer") as c:
            while not self.stop.is_set():
                camera = rnd.choice(CAMERAS)
                segs = self._segments(c, camera)
                first = float(str(segs[0]["start"]))
                last = float(str(segs[-1]["end"]))
                start = rnd.uniform(first, max(first, last - 8))
                end = min(last, start + rnd.uniform(2, 8))
                n = 0
                with c.stream("GET", "/api/export", params={"camera": camera, "from": str(start),
                                                            "to": str(end)}) as r:
                    for chunk in r.iter_bytes():
                        n += len(chunk)
                if r.status_code == 200 and n > 1000:
                    self.count("export_200")
                else:
                    self.fail(f"export {camera} {start}-{end}: {r.status_code}, {n} bytes")

    def events(self) -> None:
        """One open event stream for the whole run (what every open page holds)."""
        kind = ""
        with self.api.client("viewer") as c, c.stream("GET", "/api/events", timeout=LOAD_S + 60) as r:
            if r.status_code != 200:
                self.fail(f"events: {r.status_code}")
                return
            self.sse_open.set()
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    self.sse_events[f"{kind}:{data.get('camera')}"] += 1
                if self.stop.is_set():
                    return


@pytest.mark.timing
def test_coverage_stays_while_the_api_serves_playback_export_and_events(
    rtsp_server: RtspServer, daemon_factory: DaemonFactory
) -> None:
    cams = [rtsp_camera(rtsp_server, "gate", "/cam1"), rtsp_camera(rtsp_server, "yard", "/cam2")]
    d = daemon_factory({"cameras": cams, "logging": {"file": None}})
    api = Api(d)
    for cam in CAMERAS:
        d.wait_segments(cam, 3, 60)
    wait_for(lambda: all(api.segments(camera=cam)["segments"] for cam in CAMERAS), 20, "segments in the API")
    load = Load(api)
    threads = [threading.Thread(target=load.events, daemon=True)]
    threads += [threading.Thread(target=load.playback, args=(i,), daemon=True) for i in range(3)]
    threads += [threading.Thread(target=load.exports, args=(10 + i,), daemon=True) for i in range(2)]
    threads[0].start()
    assert load.sse_open.wait(20), "the event stream did not open"
    load_start = time.time()
    for t in threads[1:]:
        t.start()
    time.sleep(LOAD_S)  # the load runs for a fixed time: this is its duration, not a wait for a condition
    load.stop.set()
    load_end = time.time()
    for t in threads[1:]:
        t.join(60)
    # The event stream ends at its next line: the next segment, at most one videoDuration away.
    threads[0].join(20)
    assert not any(t.is_alive() for t in threads), "a client thread is stuck"
    assert d.stop() == 0
    assert not load.errors, load.errors[:5]
    # The API was really busy: hundreds of Range requests, exports, the live stream of segments.
    assert load.counts["range_206"] >= 100 and load.counts["export_200"] >= 10, load.counts
    for cam in CAMERAS:
        assert load.sse_events[f"segment_finished:{cam}"] >= LOAD_S / 2 / 2, load.sse_events
        # One ffmpeg run per camera: no restart, no stall while the API was serving.
        assert not d.events("stall_detected", camera=cam)
        assert len(d.events("camera_state", camera=cam, state="starting")) == 1
        during = [p for p in d.segments(cam) if load_start <= p.stat().st_mtime <= load_end + 3]
        assert len(during) >= LOAD_S / 2 - 3, (cam, len(during))
        assert_contiguous(during, cam)
        ratio, media, wall = coverage(during)
        print(f"{cam}: coverage {ratio:.5f} ({media:.3f} s media / {wall:.3f} s wall) under API load {load.counts}")
        assert ratio >= 0.999, f"{cam}: coverage {ratio:.5f} ({media:.3f}s media / {wall:.3f}s wall)"
