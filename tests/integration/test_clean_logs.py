"""What a newcomer sees in the logs of a clean first run and a clean stop, and what ffmpeg children can read of
the daemon's environment: the real daemon, the real ffmpeg (and a real RTSP server for the password)."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from tests.conftest import RTSP_PASSWORD, RTSP_USER
from tests.support.daemon import DaemonProc, pattern_camera, wait_for
from tests.support.rtsp import RtspServer


def test_first_run_and_clean_stop_log_no_noise_and_no_error(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path, {"cameras": [pattern_camera("cam", duration=1)]})
    d.start()
    try:
        d.wait_segments("cam", 2, timeout=60)
    finally:
        assert d.stop() == 0
    out = d.output()
    events = d.events()
    assert events, out
    # a clean run and a clean stop: nothing at error level, from us or a library (watchdog's stop race)
    assert [e for e in events if e["level"] in ("error", "critical")] == []
    assert "queue_events() called when the thread is inactive" not in out
    # ffmpeg's banner never, its stream report only at debug
    assert "configuration:" not in out and "built with" not in out
    assert [e["line"] for e in events if e["event"] == "ffmpeg" and e["level"] != "debug"] == []
    # first start: an empty catalog rebuilt is no warning
    assert [e for e in events if e["event"] == "catalog_rebuilt" and e["level"] != "info"] == []
    # the stop we asked for: info, "stopped", no exit status 255 that reads like a failure
    stopped = [e for e in events if e["event"] == "camera_state" and e["state"] == "stopped"]
    assert len(stopped) == 1, stopped
    assert stopped[0]["level"] == "info" and stopped[0]["reason"] == "stopped" and "exit_code" not in stopped[0]
    assert [e for e in events if e["level"] == "warning"] == []


def _children_ffmpeg(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if "ffmpeg" in p.name()]
    except psutil.NoSuchProcess:
        return []


def test_ffmpeg_children_do_not_get_the_password_variable(tmp_path: Path, rtsp_server: RtspServer) -> None:
    """The camera password comes from ${CAM_SECRET_PW}: the daemon has it in its environment, but no ffmpeg
    child may (its /proc/<pid>/environ is readable by the same user and by tools that dump environments)."""
    camera = {"cameraName": "gate", "url": rtsp_server.url("/cam1"), "userName": RTSP_USER,
              "password": "${CAM_SECRET_PW}", "videoDuration": 2}
    d = DaemonProc(tmp_path, {"cameras": [camera]},
                   env={"CAM_SECRET_PW": RTSP_PASSWORD, "AWS_SECRET_ACCESS_KEY": "not-for-ffmpeg",
                        "LC_TIME": "C.UTF-8", "TZ": "UTC"})
    d.start()
    try:
        assert d.proc is not None
        d.wait_segments("gate", 1, timeout=60)  # the password from the variable works
        children = wait_for(lambda: _children_ffmpeg(d.proc.pid), 30, "an ffmpeg child", proc=d.proc)
        daemon_env = Path(f"/proc/{d.proc.pid}/environ").read_bytes()
        assert f"CAM_SECRET_PW={RTSP_PASSWORD}".encode() in daemon_env  # the test's premise
        for child in children:
            raw = Path(f"/proc/{child.pid}/environ").read_bytes()
            env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
            assert RTSP_PASSWORD not in raw.decode(), sorted(env)
            assert "CAM_SECRET_PW" not in env and "AWS_SECRET_ACCESS_KEY" not in env, sorted(env)
            assert env["PATH"] == os.environ["PATH"] and env["LC_TIME"] == "C.UTF-8" and env["TZ"] == "UTC"
    finally:
        assert d.stop() == 0
