"""The live view's command and files: the tee muxer's quoting read back the way ffmpeg reads it, recorded
segments byte-for-byte the same with the live output on (real ffmpeg), the live output's errors never taken for
the recording's, the config switches, and the folder made ours."""

from __future__ import annotations

import filecmp
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.config.model import CameraConfig, parse_config
from cctv_daemon.recording import ffmpeg_process as fp
from cctv_daemon.recording import live
from cctv_daemon.recording.ffmpeg_command import (
    SEGMENT_FORMAT_OPTIONS,
    SegmentOutput,
    build_command,
    tee_target,
)


def av_get_token(buf: str, delims: str) -> tuple[str, str]:
    """libavutil's av_get_token(): (token, rest starting at the delimiter). Backslash escapes one character,
    '...' quotes, leading/trailing white space is dropped."""
    i, out, end = 0, [], 0
    while i < len(buf) and buf[i].isspace():
        i += 1
    while i < len(buf) and buf[i] not in delims:
        ch = buf[i]
        if ch == "\\" and i + 1 < len(buf):
            out.append(buf[i + 1])
            i += 2
            end = len(out)
        elif ch == "'":
            j = buf.index("'", i + 1)
            out.extend(buf[i + 1:j])
            i = j + 1
            end = len(out)
        else:
            out.append(ch)
            i += 1
            if not ch.isspace():
                end = len(out)
    return "".join(out[:end]), buf[i:]


def parse_tee(target: str) -> list[tuple[dict[str, str], str]]:
    """libavformat/tee.c: slaves split on "|" (one av_get_token each), then "[k=v:k=v]" options (values via
    av_get_token with ":]" delimiters), the rest is the file name."""
    slaves, rest = [], target
    while rest:
        slave, rest = av_get_token(rest, "|")
        rest = rest[1:]
        opts: dict[str, str] = {}
        assert slave.startswith("[")
        p = slave[1:]
        while True:
            key, p = p.split("=", 1)
            value, p = av_get_token(p, ":]")
            opts[key] = value
            if p.startswith("]"):
                break
            p = p[1:]
        slaves.append((opts, p[1:]))
    return slaves


def cfg(**api: Any) -> Any:
    return parse_config({"cameras": [{"cameraName": "a", "source": "test"},
                                     {"cameraName": "b", "source": "test", "liveView": False},
                                     {"cameraName": "c", "source": "test", "liveView": True}],
                         "storageConfig": {"savePath": "/srv/rec"}, "api": api})


def test_tee_quoting_reads_back_as_written() -> None:
    awkward = "/tmp/we ird:dir|x/[a]b'c\\d/%06d.mp4"
    slaves = [({"f": "segment", "segment_format_options": SEGMENT_FORMAT_OPTIONS, "segment_list": awkward}, awkward),
              ({"f": "hls", "hls_flags": "delete_segments+omit_endlist"}, "/tmp/live dir/live.m3u8")]
    assert parse_tee(tee_target(slaves)) == slaves


def test_live_output_is_a_tee_slave_and_recording_options_stay(tmp_path: Path) -> None:
    out = SegmentOutput(tmp_path / "staging", "r1")
    for cam in (CameraConfig(cameraName="t", source="test"), CameraConfig(cameraName="r", url="rtsp://h/s")):
        plain = build_command(cam, "ffmpeg", out)
        teed = build_command(cam, "ffmpeg", out, live_dir=tmp_path / "live")
        assert "tee" not in plain
        target = next(a for a in teed if a.startswith("\\[f=segment"))
        rec, hls = parse_tee(target)
        assert rec[1] == str(out.pattern) and rec[0].pop("onfail") == "abort" and rec[0].pop("f") == "segment"
        assert "segment" in plain and "-f" in plain
        # every segment option of the plain command went into the recording slave, with its value
        plain_opts = {plain[j][1:]: plain[j + 1] for j in range(len(plain) - 1) if plain[j].startswith("-segment")
                      or plain[j] == "-reset_timestamps"}
        assert rec[0] == plain_opts
        assert hls[0]["onfail"] == "ignore" and hls[0]["f"] == "hls" and hls[0]["select"] == "v"
        assert hls[1] == str(tmp_path / "live" / live.PLAYLIST)
        assert ("-flags:v" in teed) == (cam.source == "test") and ("-time_base:v" in teed) == (cam.source == "rtsp")


def test_recorded_segments_are_the_same_bytes_with_live_view(tmp_path: Path) -> None:
    cam = CameraConfig(cameraName="t", source="test", videoDuration=1)
    made: dict[str, list[Path]] = {}
    for name, live_dir in (("plain", None), ("tee", tmp_path / "live")):
        d = tmp_path / name
        d.mkdir()
        out = SegmentOutput(d, "r1")
        out.list_file.parent.mkdir(parents=True)
        if live_dir is not None:
            live_dir.mkdir()
        args = [a for a in build_command(cam, "ffmpeg", out, live_dir=live_dir) if a != "-re"]
        i = args.index("-i")
        args[i + 1] += ":duration=3"
        subprocess.run(args, capture_output=True, check=True, timeout=60)
        made[name] = sorted(d.glob("*.mp4"))
    assert len(made["plain"]) >= 3 and [p.name for p in made["plain"]] == [p.name for p in made["tee"]]
    for a, b in zip(made["plain"], made["tee"], strict=True):
        assert filecmp.cmp(a, b, shallow=False), a.name
    assert (tmp_path / "live" / live.PLAYLIST).exists() and (tmp_path / "live" / live.INIT).exists()


@pytest.mark.parametrize("line", [
    "[hls @ 0x55c9c8d005c0] [error] Failed to open file '/dev/shm/x/live3.m4s.tmp'",
    "[hls @ 0x55c9c8d005c0] [error] failed to rename file a.tmp to a: No space left on device",
    "[tee @ 0x55c9c8a30900] [error] Slave muxer #1 failed: Permission denied, continuing with 1/2 slaves.",
    "[tee @ 0x55c9c8a30900] [error] Slave '[f=hls:onfail=ignore]/x/live.m3u8': error writing header: "
    "No space left on device"])
def test_live_output_errors_are_not_the_recordings(line: str) -> None:
    proc = fp.FfmpegProcess.__new__(fp.FfmpegProcess)
    proc.camera, proc.pid, proc.failure, proc.last_error, proc.audio_codec = "c", 1, None, None, None
    proc._lock = __import__("threading").Lock()
    proc._on_line = None
    proc.source_label = None
    proc._stderr_line(line)
    assert proc.failure is None and proc.last_error is None
    proc._stderr_line("[tee @ 0x1] [error] Slave muxer #0 failed: No space left on device, aborting.")
    assert proc.failure == fp.DISK_FULL


def test_switches() -> None:
    c = cfg(port=0)  # on by default; a camera's own liveView wins
    assert [live.enabled(c, cam) for cam in c.cameras] == [True, False, True]
    c = cfg(liveView=False)
    assert [live.enabled(c, cam) for cam in c.cameras] == [False, False, True]
    c = cfg(enabled=False)
    assert [live.enabled(c, cam) for cam in c.cameras] == [False, False, False]
    c = cfg(liveDir="/run/x")
    assert re.fullmatch(r"/run/x/cctv-daemon-\d+/[0-9a-f]{12}/a", str(live.camera_dir(c, c.cameras[0])))


def test_prepare_empties_and_refuses_foreign_folders(tmp_path: Path) -> None:
    folder = tmp_path / "cctv-daemon-0" / "k" / "cam"
    live.prepare(folder)
    (folder / "live7.m4s").write_bytes(b"old run")
    live.prepare(folder)
    assert list(folder.iterdir()) == [] and folder.stat().st_mode & 0o777 == 0o700
    folder.rmdir()
    folder.write_bytes(b"a file where the folder was")
    assert live.prepare(folder).is_dir()
    if os.getuid() == 0:
        os.chown(folder.parent, 12345, 12345)
        with pytest.raises(OSError, match="another user"):
            live.prepare(folder)
    assert live.LIVE_FILE.match("live12.m4s") and not live.LIVE_FILE.match("live12.m4s.tmp")
    assert not live.LIVE_FILE.match("../live.m3u8")
