"""Names that tell the true time, judged against a clock the daemon does not own: the RTSP server logs the wall-clock
time at which it sends each keyframe, and every segment starts with a keyframe. Cameras whose clock runs 1 % fast
or slow, whose timestamps jump, and that come back after an outage (real GStreamer server, real ffmpeg)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.segments import names as segment_names
from tests.conftest import RTSP_PASSWORD, RTSP_USER
from tests.integration.test_recording import rtsp_camera
from tests.support.daemon import DaemonProc, wait_for
from tests.support.media import make_h264
from tests.support.rtsp import RtspServer

GOP_S = 3  # one keyframe every 3 s of media: a segment matches its keyframe without ambiguity (errors < 1.5 s)
SEGMENT_S = 3
EXACT_TOLERANCE_S = 0.5  # exact start vs keyframe sent; names are whole seconds, so the name is within 1 s
FAST = {"backoffBase": 0.5, "backoffCap": 3.0, "steadyAfter": 20.0, "stopTimeout": 2.0}


@pytest.fixture(scope="module")
def gop3_file() -> Path:
    return make_h264(None, seconds=12, size="320x180", fps=10, gop=10 * GOP_S)


@pytest.fixture
def daemons() -> Iterator[list[DaemonProc]]:
    made: list[DaemonProc] = []
    yield made
    for d in made:
        d.close()


def serve(tmp: Path, h264: Path, **kw: Any) -> RtspServer:
    return RtspServer({"/cam": ("video", h264)}, user=RTSP_USER, password=RTSP_PASSWORD,
                      keyframe_log=tmp / "keyframes.log", **kw)


def name_errors(server: RtspServer, d: DaemonProc, camera: str) -> list[tuple[float, float]]:
    """(exact start error, name start error) per segment: against the keyframe the server sent nearest to it."""
    keys = server.keyframes("/cam")
    assert keys, "the server logged no keyframe"
    out = []
    for e in d.events("segment_finished", camera=camera):
        nearest = min(keys, key=lambda k: abs(k - e["start_at"]))
        name_start = segment_names.parse_stamp(e["start"])
        out.append((e["start_at"] - nearest, name_start - nearest))
    return out


def record(server: RtspServer, daemons: list[DaemonProc], tmp: Path, seconds: float,
           **cam_extra: Any) -> DaemonProc:
    cam = rtsp_camera(server, "cam", "/cam", duration=SEGMENT_S, **cam_extra)
    d = DaemonProc(tmp, {"cameras": [cam], "supervisor": FAST})
    daemons.append(d)
    d.start()
    d.wait_event("camera_state", 30, camera="cam", state="recording")
    time.sleep(seconds)  # the run itself is what is measured: its length is the test's subject
    assert d.stop() == 0
    return d


def assert_true_names(server: RtspServer, d: DaemonProc, limit: float = EXACT_TOLERANCE_S) -> float:
    errors = name_errors(server, d, "cam")
    assert len(errors) >= 5, errors
    # the last segment ends at the stop, not at a keyframe, but it starts at one like every other
    worst = max(abs(exact) for exact, _ in errors)
    assert worst <= limit, f"segment starts vs keyframes sent: {errors}"
    assert max(abs(name) for _, name in errors) <= 1.0, errors
    events = d.events("segment_finished", camera="cam")
    for a, b in itertools.pairwise(events):
        if a["run_id"] == b["run_id"]:
            assert a["end_at"] == b["start_at"], (a, b)  # consecutive segments of a run touch
        assert b["start_at"] >= a["end_at"], (a, b)  # never overlap
    return worst


# 30 s at 2 % drift: 0.6 s between the camera's clock and the wall clock by the end, as 60 s at 1 % (names from the
# camera's clock would be off by more than EXACT_TOLERANCE_S either way). Not more than 2 %: a run's first segment
# is placed as (its end - its media duration), off by |1 - rate| x its ~4 s (segments/timeline.py, SHORT_FIRST_S).
DRIFT_RUN_S = 30


@pytest.mark.parametrize("rate", [1.02, 0.98], ids=["fast_2pct", "slow_2pct"])
def test_names_follow_the_wall_clock_not_a_drifting_camera(
    gop3_file: Path, daemons: list[DaemonProc], tmp_path: Path, rate: float
) -> None:
    with serve(tmp_path, gop3_file, clocks={"/cam": rate}) as server:
        d = record(server, daemons, tmp_path, DRIFT_RUN_S)
    assert_true_names(server, d)
    events = d.events("segment_finished", camera="cam")
    media = sum(e["media_duration"] for e in events[1:-1])
    wall = events[-2]["end_at"] - events[1]["start_at"]
    assert media / wall == pytest.approx(rate, abs=0.004), "media duration is kept apart from wall duration"
    assert len(d.events("camera_state", camera="cam", state="starting")) == 1


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("rate", [1.01, 0.99], ids=["fast_1pct", "slow_1pct"])
def test_names_stay_true_over_ten_minutes_of_drift(
    gop3_file: Path, daemons: list[DaemonProc], tmp_path: Path, rate: float
) -> None:
    """10 minutes at 1 % stand in for days at 100 ppm: the old anchor+media names were 6 s off by the end."""
    with serve(tmp_path, gop3_file, clocks={"/cam": rate}) as server:
        d = record(server, daemons, tmp_path, 600, videoDuration=30)
    assert_true_names(server, d)


@pytest.mark.parametrize("jump", [5.0, -5.0, 3600.0], ids=["plus5s", "minus5s", "plus1h"])
def test_camera_timestamp_jump_changes_no_name_opens_no_gap_restarts_nothing(
    gop3_file: Path, daemons: list[DaemonProc], tmp_path: Path, jump: float
) -> None:
    # The jump comes at 15 s of media (after the run's anchor window, 10 s); 15 s more after it: 5 segments and
    # over twice the stallTimeout to show that no stall is seen and nothing restarts.
    with serve(tmp_path, gop3_file, jumps={"/cam": (15.0, jump)}) as server:
        d = record(server, daemons, tmp_path, 30, stallTimeout=6)
    assert_true_names(server, d)
    assert len(d.events("camera_state", camera="cam", state="starting")) == 1, "ffmpeg was restarted"
    assert not d.events("stall_detected")
    listed = d.cli("segments", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["gaps"] == [], "a phantom gap"


def test_names_true_after_sigkill_and_restart(gop3_file: Path, daemons: list[DaemonProc], tmp_path: Path) -> None:
    with serve(tmp_path, gop3_file) as server:
        cam = rtsp_camera(server, "cam", "/cam", duration=SEGMENT_S)
        d = DaemonProc(tmp_path, {"cameras": [cam], "supervisor": FAST})
        daemons.append(d)
        d.start()
        d.wait_segments("cam", 3, 40)
        d.kill()
        d2 = DaemonProc(tmp_path, d.config)
        daemons.append(d2)
        d2.start()
        d2.wait_event("camera_state", 30, camera="cam", state="recording")
        d2.wait_event("segment_finished", 30, count=3, recovered=False)
        assert d2.stop() == 0
    # The first daemon's segments and those the second recovered and recorded, all against the server's clock.
    errors = name_errors(server, d, "cam") + name_errors(server, d2, "cam")
    assert max(abs(e) for e, _ in errors) <= EXACT_TOLERANCE_S, errors
    starts = [e["start_at"] for dd in (d, d2) for e in dd.events("segment_finished", camera="cam")]
    ends = [e["end_at"] for dd in (d, d2) for e in dd.events("segment_finished", camera="cam")]
    order = sorted(zip(starts, ends, strict=True))
    for (_s1, e1), (s2, _) in itertools.pairwise(order):
        assert s2 >= e1, f"overlap across runs: {order}"


@pytest.mark.timing
@pytest.mark.parametrize("outage_s", [8, pytest.param(60, marks=pytest.mark.chaos)], ids=["8s", "60s"])
def test_camera_back_after_outage_records_within_3s(
    gop3_file: Path, daemons: list[DaemonProc], tmp_path: Path, outage_s: int
) -> None:
    server = serve(tmp_path, gop3_file)
    try:
        server.start()
        cam = rtsp_camera(server, "cam", "/cam", duration=SEGMENT_S)
        # A long backoff (2, 4, 8, 16, 30 s ±20 %): without the reach probe the camera would come back at the
        # next retry, ≥ 5 s after the server after an 8 s outage, up to 30 s after a 60 s one.
        d = DaemonProc(tmp_path, {"cameras": [cam],
                                  "supervisor": {**FAST, "backoffBase": 2.0, "backoffCap": 30.0}})
        daemons.append(d)
        d.start()
        d.wait_event("camera_state", 30, camera="cam", state="recording")
        server.kill()
        time.sleep(outage_s)  # the outage is the subject of the test
        server.start()
        back = time.time()
        spawns_before = len(d.events("camera_state", camera="cam", state="starting"))
        d.wait_event("camera_state", 15, count=2, camera="cam", state="recording")
        keys = wait_for(lambda: [k for k in server.keyframes("/cam") if k >= back - 1], 10, "new media")
        first_media = keys[0]
        assert first_media - back <= 3.0, f"first new media {first_media - back:.2f} s after the camera returned"
        # ... and the daemon's segments say so: the new run's first segment starts with that media
        new_run = wait_for(lambda: [e for e in d.events("segment_finished", camera="cam")
                                    if e["start_at"] >= back - 1], 20, "a segment of the new run")
        assert new_run[0]["start_at"] - back <= 3.0, new_run[0]
        assert abs(new_run[0]["start_at"] - first_media) <= EXACT_TOLERANCE_S, (new_run[0], first_media)
        assert d.events("camera_back", camera="cam")
        # ffmpeg was spawned no more often than the backoff allows during the outage
        assert spawns_before <= 2 + outage_s // 3, spawns_before
        assert d.stop() == 0
    finally:
        server.close()


def test_camera_answering_401_is_not_probed_faster_than_the_backoff(
    gop3_file: Path, daemons: list[DaemonProc], tmp_path: Path
) -> None:
    with serve(tmp_path, gop3_file) as server:
        cam = rtsp_camera(server, "cam", "/cam", duration=SEGMENT_S, password="wrong")
        d = DaemonProc(tmp_path, {"cameras": [cam], "supervisor": {**FAST, "backoffCap": 4.0}})
        daemons.append(d)
        d.start()
        d.wait_event("camera_state", 20, camera="cam", state="auth_failed")
        first = time.monotonic()
        time.sleep(12)  # observe the retry cadence
        span = time.monotonic() - first
        starts = d.events("camera_state", camera="cam", state="starting")
        assert d.stop() == 0
    # 401: every retry waits the backoff cap (4 s, jitter ±) — no early start on a probe
    assert len(starts) <= 1 + span / (4.0 * 0.75) + 1, [s["timestamp"] for s in starts]
    times = [_ts(s) for s in starts]
    assert all(b - a >= 4.0 * 0.75 for a, b in itertools.pairwise(times[1:])), times
    assert not d.events("camera_back")


def _ts(event: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
