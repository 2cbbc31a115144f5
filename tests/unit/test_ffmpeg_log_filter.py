"""Which of ffmpeg's stderr lines reach the log, at which level: fed with real ffmpeg output."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cctv_daemon.recording.ffmpeg_process import log_level_for, parse_line


def _stderr(*args: str) -> list[str]:
    res = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "level+info", *args], capture_output=True,
                         text=True, timeout=60)
    return [line for line in res.stderr.splitlines() if line.strip()]


def _levels(lines: list[str]) -> list[tuple[str | None, str]]:
    out = []
    for line in lines:
        ff_level, text = parse_line(line)
        out.append((log_level_for(ff_level, text), text))
    return out


def test_banner_is_dropped_and_reports_are_debug(tmp_path: Path) -> None:
    # No -hide_banner, a transcode with libx264 and the segment muxer: banner, "Input #0", "Stream mapping",
    # x264 settings and statistics, "Opening ... for writing", "Output #0" and the final summary.
    lines = _stderr("-f", "lavfi", "-i", "testsrc=d=1:size=64x64:rate=5", "-c:v", "libx264", "-f", "segment",
                    "-segment_time", "1", "-segment_format", "mp4", str(tmp_path / "o%03d.mp4"))
    levels = _levels(lines)
    dropped = [text for level, text in levels if level is None]
    assert any(t.startswith("ffmpeg version") for t in dropped)
    assert any(t.startswith("configuration:") for t in dropped)
    assert any(t.startswith("built with") for t in dropped)
    assert sum(t.startswith("lib") for t in dropped) >= 6, dropped
    assert any("Input #0" in t for _, t in levels) and any("Stream mapping" in t for _, t in levels)
    shown = [(level, text) for level, text in levels if level not in (None, "debug")]
    assert shown == [], shown  # a clean run logs nothing of ffmpeg's at info or above


def test_real_errors_and_warnings_are_kept() -> None:
    levels = _levels(_stderr("-i", "/nonexistent/input.mp4"))
    assert ("error", "/nonexistent/input.mp4: No such file or directory") in levels
    assert log_level_for(*parse_line("[rtsp @ 0x55d1c2] [warning] method SETUP failed: 461 Unsupported transport")) \
        == "warning"
    assert log_level_for(*parse_line("[rtsp @ 0x55d1c2] [error] method DESCRIBE failed: 401 Unauthorized")) \
        == "error"
    # untagged lines (an ffmpeg that ignores level+): the report is debug, anything else stays info
    assert log_level_for(None, "Stream mapping:") == "debug"
    assert log_level_for(None, "Input #0, rtsp, from 'rtsp://admin:***@cam/1':") == "debug"
    assert log_level_for(None, "Connection to tcp://cam:554 failed: Connection refused") == "info"
    # the known harmless warning of live RTSP sources stays at debug (FIELD-NOTES)
    assert log_level_for(*parse_line("[mp4 @ 0x1] [warning] Timestamps are unset in a packet for stream 0.")) \
        == "debug"


def test_stdin_playlist_input_is_named_by_the_camera_source_never_its_secrets() -> None:
    """Acceptance audit: "pipe:0: Connection refused" named ffmpeg's stdin, not the camera. Real ffmpeg output (a
    refused port through the ffconcat playlist on stdin), rewritten with the camera's source label."""
    from cctv_daemon.config.model import CameraConfig
    from cctv_daemon.recording.ffmpeg_command import input_playlist, source_label
    from cctv_daemon.recording.ffmpeg_process import name_input
    from tests.support.rtsp import free_port

    port = free_port()
    cam = CameraConfig(cameraName="door", url=f"rtsp://127.0.0.1:{port}/live?token=t0ken-s3cr3t", userName="u",
                       password="pa:ss/w@rd", videoDuration=1)
    label = source_label(cam)
    assert label == f"rtsp://***@127.0.0.1:{port}/live"
    playlist = input_playlist(cam)
    assert playlist is not None
    res = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "level+info", "-f", "concat",
                          "-safe", "0", "-protocol_whitelist", "file,pipe,rtsp,rtp,udp,tcp", "-i", "pipe:0",
                          "-f", "null", "-"], input=playlist, capture_output=True, timeout=60)
    lines = [name_input(parse_line(x)[1], label) for x in res.stderr.decode().splitlines() if "[error]" in x]
    assert f"{label}: Connection refused" in lines, lines
    assert f"[concat] Impossible to open '{label}'" in lines, lines
    joined = "\n".join(lines)
    assert "pipe:0" not in joined and "pa:ss" not in joined and "w@rd" not in joined and "t0ken" not in joined
    assert name_input("pipe:0: Connection refused", None) == "pipe:0: Connection refused"  # not an RTSP camera
    assert source_label(CameraConfig(cameraName="t", source="test", videoDuration=1)) is None
