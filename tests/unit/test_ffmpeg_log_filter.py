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
