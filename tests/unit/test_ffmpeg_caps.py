"""Which ffmpeg can do the job, tried for real: Debian's ffmpeg (5.1), the bundled imageio-ffmpeg binary, and a
real static ffmpeg 4.2.2 (what Ubuntu 22.04 / Debian 11 users have on PATH)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.config.model import CameraConfig, parse_config
from cctv_daemon.recording import ffmpeg_caps as fc
from cctv_daemon.recording.ffmpeg_command import SegmentOutput, build_command

# Options the trials do not pass because every ffmpeg since 3.x has them (input/encoder basics); anything else
# ffmpeg_command passes must be tried by ffmpeg_caps, so that "can do the job" stays true as the command grows.
OLDER_THAN_4 = {"-i", "-f", "-re", "-map", "-an", "-c:a", "-b:a", "-c:v", "-preset", "-tune", "-pix_fmt", "-r",
                "-g", "-s", "-force_key_frames", "-framerate", "-video_size", "-hide_banner", "-threads",
                "-x264-params", "-fflags", "-flags"}


def cam(**kw: Any) -> CameraConfig:
    return CameraConfig(**{"cameraName": "gate", "ipAddress": "10.0.0.5", **kw})


def test_needs_follow_the_cameras() -> None:
    base = {fc.PLAYLIST, fc.SEGMENT, fc.PROGRESS, fc.LAVFI}
    assert set(fc.needed_by([cam()])) == base | {fc.RTSP, fc.AAC}
    assert set(fc.needed_by([cam(audio="none", frameRate=5)])) == base | {fc.RTSP, fc.LIBX264}
    assert set(fc.needed_by([CameraConfig(cameraName="t", source="test")])) == base | {fc.LIBX264}
    assert fc.WEBCAM in fc.needed_by([CameraConfig(cameraName="w", source="webcam", device="/dev/video0")])


def test_old_ffmpeg_lacks_playlist_options_and_stats_period(ffmpeg_4_2_2: Path) -> None:
    caps = fc.run_trials(str(ffmpeg_4_2_2))
    assert caps.version.startswith("4.2.2")
    assert set(caps.missing) == {fc.PLAYLIST, fc.PROGRESS}, caps.missing
    assert "unknown keyword 'option'" in caps.missing[fc.PLAYLIST]
    assert "stats_period" in caps.missing[fc.PROGRESS]
    assert caps.lacks(fc.needed_by([cam()])) == [fc.PLAYLIST, fc.PROGRESS]


@pytest.mark.parametrize("which", ["path", "bundled"])
def test_current_ffmpegs_can_do_the_job(which: str) -> None:
    exe = shutil.which("ffmpeg") if which == "path" else fc.bundled_ffmpeg()
    assert exe is not None
    caps = fc.run_trials(exe)
    need = fc.needed_by([cam(), cam(frameRate=5), CameraConfig(cameraName="t", source="test")])
    assert caps.lacks(need) == [], caps.missing


def test_every_option_the_recorder_passes_is_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: set[str] = set()
    real_run = fc._run

    def spy(args: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
        tried.update(a for a in args if a.startswith("-"))
        tried.update(f"tee:{k}" for a in args for k in _tee_keys(a))
        return real_run(args, stdin)

    monkeypatch.setattr(fc, "_run", spy)
    fc.run_trials(shutil.which("ffmpeg") or "ffmpeg")
    out = SegmentOutput(Path("/tmp/x"), "r1")
    used: set[str] = set()
    for c in (cam(), cam(audio="aac"), cam(frameRate=5, resolution="640x360"),
              CameraConfig(cameraName="t", source="test")):
        for live_dir in (None, Path("/dev/shm/live")):  # with the live view: a tee muxer whose slaves have options
            args = build_command(c, "ffmpeg", out, live_dir=live_dir)
            used.update(a for a in args if a.startswith("-") and not a[1:2].isdigit())
            used.update(f"tee:{k}" for a in args for k in _tee_keys(a))
    assert any(u.startswith("tee:hls_") for u in used)
    assert used - tried - OLDER_THAN_4 == set(), "options the capability trial does not try (ffmpeg_caps.py)"


def _tee_keys(arg: str) -> set[str]:
    """Option names of the slaves in a tee muxer's output name ("[k=v:k=v]file|[...]file", quoted twice)."""
    if not arg.startswith("\\["):
        return set()
    return {m.group(1) for m in re.finditer(r"(?:\\\[|\\:)(\w+)=", arg)}


def test_probe_is_cached_per_binary_path_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = tmp_path / "ffmpeg"
    fake.write_text(f'#!/bin/sh\nexec {shutil.which("ffmpeg")} "$@"\n')
    fake.chmod(0o755)
    runs: list[str] = []
    real = fc.run_trials

    def counting(exe: str) -> fc.Capabilities:
        runs.append(exe)
        return real(exe)

    monkeypatch.setattr(fc, "run_trials", counting)
    monkeypatch.setattr(fc, "_MEMO", {})
    first = fc.probe(str(fake))
    assert runs == [str(fake)] and first.missing == {}
    assert (tmp_path / "cache" / "cctv-daemon" / "ffmpeg-capabilities.json").exists()
    monkeypatch.setattr(fc, "_MEMO", {})  # a new process: only the file cache is left
    assert fc.probe(str(fake)) == first and len(runs) == 1
    st = fake.stat()
    os.utime(fake, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the binary was replaced
    fc.probe(str(fake))
    assert len(runs) == 2


def test_explicit_ffmpeg_path_that_cannot_is_a_config_error(ffmpeg_4_2_2: Path, tmp_path: Path) -> None:
    config = parse_config({"cameras": [{"cameraName": "gate", "ipAddress": "10.0.0.5"}],
                               "storageConfig": {"savePath": str(tmp_path)}, "ffmpegPath": str(ffmpeg_4_2_2)})
    with pytest.raises(fc.FfmpegUnusable) as err:
        fc.choose_ffmpeg(config)
    assert err.value.key == "ffmpegPath"
    assert "option" in str(err.value) and "-stats_period" in str(err.value)
