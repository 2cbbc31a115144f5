"""The camera state machine with an injected clock around a real ffmpeg: time-based decisions (stall, backoff,
steady reset, kill after stop timeout) are driven by the fake clock, processes and signals are real."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cctv_daemon.config.model import CameraConfig, SupervisorConfig
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.recording.camera import Camera, State
from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
from cctv_daemon.segments import staging
from tests.support.daemon import wait_for

SUP = SupervisorConfig(backoffBase=1.0, backoffCap=8.0, steadyAfter=60.0, stopTimeout=5.0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ticks_until(cam: Camera, cond: object, timeout: float = 20) -> None:
    assert callable(cond)
    wait_for(lambda: (cam.tick(), cond())[1], timeout, f"camera condition (state {cam.state})", interval=0.05)


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[Camera]]:
    cams: list[Camera] = []
    yield cams
    for cam in cams:
        if cam.proc is not None:
            cam.proc.kill()
            cam.proc.proc.wait(5)


def make(tmp_path: Path, clock: FakeClock, made: list[Camera], **kw: object) -> Camera:
    cfg = CameraConfig(**{"cameraName": "c1", "videoFeedId": "c1", **kw})  # type: ignore[arg-type]
    cam = Camera(cfg, SUP, find_ffmpeg(), tmp_path, clock)
    made.append(cam)
    return cam


def test_stall_is_detected_from_media_time_and_ffmpeg_is_killed_then_restarted(
    tmp_path: Path, made: list[Camera]
) -> None:
    clock = FakeClock()
    cam = make(tmp_path, clock, made, source="test", videoDuration=5, stallTimeout=10.0, resolution="160x120")
    cam.start()
    assert cam.state == State.STARTING
    ticks_until(cam, lambda: cam.state == State.RECORDING)
    proc = cam.proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)  # silent stall: process alive, no media
    clock.advance(9.0)
    cam.tick()
    assert cam.state == State.RECORDING  # not yet
    clock.advance(1.5)
    cam.tick()
    assert cam.state == State.STOPPING and cam.reason == "stall"
    assert cam.counters.stalls == 1
    cam.tick()
    assert proc.poll() is None  # SIGTERM is pending on a stopped process...
    clock.advance(SUP.stopTimeout + 0.1)
    ticks_until(cam, lambda: cam.state == State.BACKOFF)  # ...so it was killed after stopTimeout
    assert proc.poll() == -signal.SIGKILL
    assert 0.8 <= cam.retry_at - clock.monotonic() <= 1.2
    clock.advance(1.3)
    cam.tick()
    assert cam.state == State.STARTING and cam.proc is not None and cam.proc.pid != proc.pid
    assert cam.counters.reconnects == 1
    ticks_until(cam, lambda: cam.state == State.RECORDING)


def test_backoff_grows_on_repeated_failures_and_resets_only_after_steady_recording(
    tmp_path: Path, made: list[Camera]
) -> None:
    clock = FakeClock()
    cam = make(tmp_path, clock, made, ipAddress="127.0.0.1", port=closed_port())
    cam.start()
    delays = []
    for _ in range(4):
        ticks_until(cam, lambda: cam.state == State.BACKOFF)
        delays.append(cam.retry_at - clock.monotonic())
        assert cam.reason == "connection refused"
        clock.advance(delays[-1] + 0.01)
        cam.tick()
        assert cam.state == State.STARTING
    for n, d in enumerate(delays):
        assert 0.8 * min(8, 2**n) <= d <= 1.2 * min(8, 2**n), delays
    assert cam.counters.reconnects == 4
    assert cam.counters.last_error and "refused" in cam.counters.last_error.lower()
    # A recording that does not last steadyAfter keeps the backoff where it was.
    ok = make(tmp_path, clock, made, cameraName="c2", source="test", resolution="160x120", stallTimeout=1000.0)
    ok.backoff.failures = 3
    ok.start()
    ticks_until(ok, lambda: ok.state == State.RECORDING)
    clock.advance(59)
    ok.tick()
    assert ok.backoff.failures == 3
    clock.advance(2)
    ok.tick()
    assert ok.backoff.failures == 0


def test_a_waiting_camera_wakes_the_loop_for_its_reach_probe(tmp_path: Path, made: list[Camera]) -> None:
    """The loop sleeps until `wake_at()`: while the camera is unreachable that is its probe's next step (at most
    PROBE_INTERVAL_S away, never before backoffBase after the last start), not the end of a long backoff."""
    clock = FakeClock()
    cam = make(tmp_path, clock, made, ipAddress="127.0.0.1", port=closed_port())
    cam.backoff.failures = 4  # a long wait: the cap, 8 s ± 20 %
    cam.start()
    spawned = clock.monotonic()
    ticks_until(cam, lambda: cam.state == State.BACKOFF)
    assert cam.retry_at - clock.monotonic() >= 6
    assert cam.wake_at() == pytest.approx(spawned + SUP.backoffBase)  # no early start within backoffBase
    clock.advance(SUP.backoffBase)
    cam.tick()  # the probe's first connect: refused at once on loopback, or in flight
    assert cam.state == State.BACKOFF
    assert clock.monotonic() < cam.wake_at() <= clock.monotonic() + 0.5
    cam.stop()
    assert cam.wake_at() == cam.retry_at  # no probe, nothing before the retry


def test_stop_is_polite_and_finalizes(tmp_path: Path, made: list[Camera]) -> None:
    clock = FakeClock()
    cam = make(tmp_path, clock, made, source="test", resolution="160x120")
    ended: list[str] = []
    cam.on_run_ended = lambda name, d, run: ended.append(run)
    cam.start()
    ticks_until(cam, lambda: cam.state == State.RECORDING)
    cam.stop()
    assert cam.state == State.STOPPING
    ticks_until(cam, lambda: cam.state == State.STOPPED)
    assert ended == [cam.run_id]
    assert cam.run_id is not None
    csv = staging.list_path(cam.staging_dir, cam.run_id).read_text()
    assert csv.count("\n") == 1  # ffmpeg listed the segment it finalized on SIGTERM


@pytest.mark.parametrize("live", [True, False], ids=["with-live-view", "without"])
def test_a_full_disk_is_disk_full_also_when_ffmpeg_crashes_without_saying_so(
    tmp_path: Path, made: list[Camera], live: bool
) -> None:
    """ffmpeg 5.1 segfaults on ENOSPC in its segment muxer (mov's trailer); inside the tee muxer (live view on) it
    crashes before printing "No space left on device". A real full disk (a small tmpfs filled to ENOSPC), a real
    ffmpeg: however the run ends, the camera says disk_full (retention prunes on that) and retries soon."""
    from tests.support.tmpfs import fill, tmpfs

    with tmpfs(tmp_path / "disk", "8m") as disk:
        clock = FakeClock()
        cfg = CameraConfig(cameraName="c1", videoFeedId="c1", source="test", videoDuration=1,
                           resolution="640x360", frameRate=25)
        live_dir = tmp_path / "live" if live else None
        cam = Camera(cfg, SUP, find_ffmpeg(), disk / ".cctv", clock, live_dir=live_dir)
        made.append(cam)
        cam.start()
        ticks_until(cam, lambda: cam.state == State.RECORDING)
        fill(disk / "filler")
        ticks_until(cam, lambda: cam.state == State.DISK_FULL, 30)
        assert cam.proc is None
        assert cam.retry_at - clock.monotonic() <= 3.0
        print(f"disk_full after: {cam.counters.last_error}")
