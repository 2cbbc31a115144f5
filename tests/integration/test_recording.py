"""The recording core against a real RTSP server and the real ffmpeg (issue: gapless, crash-safe segments)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from cctv_daemon.segments import names as segment_names
from tests.conftest import RTSP_PASSWORD, RTSP_USER, DaemonFactory
from tests.support.daemon import wait_for
from tests.support.media import coverage, decode_ok, probe
from tests.support.rtsp import RtspServer


def rtsp_camera(
    server: RtspServer, name: str, mount: str, duration: int = 2, **extra: object
) -> dict[str, object]:
    return {
        "cameraName": name,
        "videoFeedId": f"{name}-main",
        "url": server.url(mount),
        "userName": RTSP_USER,
        "password": RTSP_PASSWORD,
        "videoDuration": duration,
        **extra,
    }


def assert_contiguous(paths: list[Path], camera: str) -> None:
    parsed = [segment_names.parse_file_name(p.name, camera) for p in paths]
    assert all(parsed), [p.name for p in paths]
    for a, b in itertools.pairwise(parsed):
        assert a is not None and b is not None
        assert a.end == b.start, f"segments do not touch: {a} then {b}"


@pytest.mark.timing  # coverage >= 0.999 over 14 s allows 14 ms of scheduling jitter: a loaded CI pass broke it (24 ms)
def test_two_rtsp_cameras_record_contiguous_valid_segments(
    rtsp_server: RtspServer, daemon_factory: DaemonFactory
) -> None:
    d = daemon_factory(
        {"cameras": [rtsp_camera(rtsp_server, "gate", "/cam1"), rtsp_camera(rtsp_server, "yard", "/cam2")]}
    )
    for cam in ("gate", "yard"):
        d.wait_segments(cam, 8, timeout=60)
    assert d.stop() == 0
    for cam in ("gate", "yard"):
        segs = d.segments(cam)
        today = {p.parent.name for p in segs}
        assert all(datetime.strptime(day, "%Y-%m-%d") for day in today)
        assert all(p.name.startswith(f"{cam}_{cam}-main_") for p in segs)
        assert_contiguous(segs, cam)
        for p in segs:
            info = probe(p)
            assert info["video_codec"] == "h264", (p, info)
        assert len(segs) >= 8
        ratio, media, wall = coverage(segs)
        assert ratio >= 0.999, f"{cam}: coverage {ratio:.5f} ({media:.3f}s media / {wall:.3f}s wall)"
    assert not d.ffmpegs()


def test_sigterm_finalizes_last_segment_and_leaves_no_ffmpeg(
    rtsp_server: RtspServer, daemon_factory: DaemonFactory
) -> None:
    d = daemon_factory({"cameras": [rtsp_camera(rtsp_server, "gate", "/cam1", duration=30)]})
    d.wait_event("camera_state", 30, state="recording")
    ff = wait_for(lambda: d.ffmpegs(), 10, "ffmpeg running")[0]
    # The camera password is not on ffmpeg's command line (`ps`, /proc/PID/cmdline are world-readable).
    assert RTSP_PASSWORD not in " ".join(ff.cmdline())
    assert RTSP_PASSWORD not in Path(f"/proc/{ff.pid}/cmdline").read_text()
    wait_for(lambda: any((d.state_dir / "staging" / "gate").glob("*.mp4")), 10, "a segment being written")
    assert d.stop(timeout=10) == 0
    segs = d.segments("gate")
    assert len(segs) == 1, segs
    assert decode_ok(segs[0])
    assert not d.ffmpegs()
    assert not list((d.state_dir / "staging" / "gate").glob("*.mp4"))


def test_sigkill_of_ffmpeg_leaves_playable_segment_and_recording_resumes(
    rtsp_server: RtspServer, daemon_factory: DaemonFactory
) -> None:
    d = daemon_factory({"cameras": [rtsp_camera(rtsp_server, "gate", "/cam1", duration=30)]})
    d.wait_event("camera_state", 30, state="recording")
    ff = wait_for(lambda: d.ffmpegs(), 10, "ffmpeg running")[0]
    staged = wait_for(lambda: list((d.state_dir / "staging" / "gate").glob("*.mp4")), 20, "a segment being written")
    first_seen = time.time()
    wait_for(lambda: staged[0].stat().st_mtime - first_seen >= 3.0, 20, "3 s recorded into the segment")
    ff.send_signal(signal.SIGKILL)
    seg = d.wait_event("partial_segment_finalized", 20)[0]
    assert seg["duration"] > 1.0
    segs = d.wait_segments("gate", 1, 10)
    assert decode_ok(segs[0]), segs[0]
    d.wait_event("camera_state", 30, count=2, state="recording")
    assert d.stop() == 0


def test_sigkill_of_daemon_leaves_playable_segment_no_orphan(
    rtsp_server: RtspServer, daemon_factory: DaemonFactory
) -> None:
    d = daemon_factory({"cameras": [rtsp_camera(rtsp_server, "gate", "/cam1", duration=30)]})
    d.wait_event("camera_state", 30, state="recording")
    wait_for(
        lambda: any(p.stat().st_size > 30_000 for p in (d.state_dir / "staging" / "gate").glob("*.mp4")),
        20,
        "some seconds recorded",
    )
    d.kill()
    # ffmpeg is told by the kernel that its parent died (SIGTERM) and finalizes.
    wait_for(lambda: not d.ffmpegs(), 10, "ffmpeg gone after the daemon was killed")
    d.start()
    d.wait_event("staging_recovered", 30)
    segs = d.wait_segments("gate", 1, 10)
    assert decode_ok(segs[0])
    assert d.stop() == 0
    assert_contiguous(d.segments("gate")[:1], "gate")


def test_g711_audio_camera_records_with_aac(rtsp_server: RtspServer, daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"cameras": [rtsp_camera(rtsp_server, "door", "/audio", duration=2)]})
    segs = d.wait_segments("door", 2, timeout=60)
    info = probe(segs[-1])
    assert info["video_codec"] == "h264"
    assert info["audio_codec"] == "aac"
    assert d.events("audio_transcode", codec="pcm_mulaw")
    assert d.stop() == 0


def test_wrong_password_and_unknown_path_are_clear_and_secret_free(
    rtsp_server: RtspServer, daemon_factory: DaemonFactory
) -> None:
    bad_pw = "wr0ng-Pa55word"
    cams = [
        {**rtsp_camera(rtsp_server, "badauth", "/cam1"), "password": bad_pw},
        rtsp_camera(rtsp_server, "nopath", "/nosuchpath"),
    ]
    d = daemon_factory(
        {"cameras": cams, "supervisor": {"backoffBase": 0.2, "backoffCap": 1}, "logging": {"level": "debug"}}
    )
    d.wait_event("camera_state", 30, camera="badauth", state="auth_failed")
    d.wait_event("camera_state", 30, camera="nopath", state="not_found")
    d.wait_event("camera_state", 30, count=3, camera="badauth", state="auth_failed")  # it kept retrying...
    errors = [
        e for e in d.events(level="error") if e.get("camera") == "badauth" and e["event"] == "camera_state"
    ]
    assert len(errors) == 1, errors  # ...but said so once
    assert errors[0]["reason"] == "authentication failed"
    assert d.stop() == 0
    everything = d.output() + "".join(p.read_text() for p in (d.state_dir / "logs").glob("*.log*"))
    assert bad_pw not in everything and RTSP_PASSWORD not in everything
    assert "401" in everything and "404" in everything


def test_shipped_config_records_test_pattern(tmp_path: Path, daemon_factory: DaemonFactory) -> None:
    shipped = json.loads((Path(__file__).resolve().parents[2] / "config.json").read_text())
    assert [c["source"] for c in shipped["cameras"]] == ["test"]
    d = daemon_factory(shipped, start=False)
    assert d.cli("check-config").returncode == 0
    d.start()
    d.wait_event("camera_state", 30, state="recording")
    wait_for(
        lambda: any(p.stat().st_size > 10_000 for p in (d.state_dir / "staging").glob("*/*.mp4")),
        20,
        "test pattern recorded",
    )
    assert d.stop() == 0
    segs = d.segments(shipped["cameras"][0]["cameraName"])
    assert len(segs) == 1 and decode_ok(segs[0])
    assert os.path.getsize(segs[0]) > 10_000


def test_second_stop_signal_exits_at_once_and_leaves_no_ffmpeg(tmp_path: Path, daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"cameras": [{"cameraName": "t1", "source": "test", "videoDuration": 30}],
                "supervisor": {"stopTimeout": 30}})
    d.wait_event("camera_state", 30, state="recording")
    ff = wait_for(lambda: d.ffmpegs(), 10, "ffmpeg running")[0]
    ff.suspend()  # a stuck ffmpeg: the graceful stop would wait stopTimeout (30 s) for it
    d.signal(signal.SIGTERM)
    d.wait_event("daemon_stopping", 10)
    d.signal(signal.SIGTERM)
    assert d.proc is not None
    assert d.proc.wait(5) == 1  # at once, not after 30 s
    d.wait_event("second_stop_signal", 1)
    ff.resume()  # the SIGTERM it was sent is delivered now
    wait_for(lambda: not d.ffmpegs(), 10, "no ffmpeg left")
