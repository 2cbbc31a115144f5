"""Prove the test fixtures are real: a GStreamer RTSP server ffmpeg can record from, and a moto S3 server."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.conftest import RTSP_PASSWORD, RTSP_USER
from tests.support.media import decode_ok, probe
from tests.support.rtsp import RtspServer
from tests.support.s3 import MotoServer

FFMPEG = "ffmpeg"


def ffmpeg_record(
    url: str, out: Path, seconds: float, *extra: str, timeout: float = 30.0
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``ffmpeg -rtsp_transport tcp -i URL -t SECONDS -c copy OUT``; return (result, wall seconds)."""
    cmd = [
        FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-y", "-rtsp_transport", "tcp", *extra,
        "-i", url, "-t", str(seconds), "-c", "copy", str(out),
    ]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return result, time.monotonic() - started


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_records_h264_that_decodes(rtsp_server: RtspServer, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result, _ = ffmpeg_record(rtsp_server.url("/cam1", RTSP_USER, RTSP_PASSWORD), out, 6)
    assert result.returncode == 0, result.stderr
    info = probe(out)
    assert info["video_codec"] == "h264"
    assert info["audio_codec"] is None
    assert info["duration"] is not None and 5.5 <= info["duration"] <= 6.5, info["duration"]
    assert decode_ok(out)


@pytest.mark.timing  # wall within 10 % of 10 s: 1.34 s of start-up under the parallel pass's load (CI, 2026-11-30)
def test_plays_back_in_real_time(rtsp_server: RtspServer, tmp_path: Path) -> None:
    out = tmp_path / "rt.mkv"
    # 10 s of a 10 s file: crosses the loop point of the source file, too.
    result, wall = ffmpeg_record(rtsp_server.auth_url("/cam2"), out, 10)
    assert result.returncode == 0, result.stderr
    media = probe(out)["duration"]
    assert media is not None and media >= 9.5, media
    print(f"real-time check: wall {wall:.2f} s for {media:.2f} s of media (ratio {wall / media:.3f})")
    assert abs(wall - media) <= 0.1 * media, (wall, media)
    assert decode_ok(out)


def test_wrong_password_is_401(rtsp_server: RtspServer, tmp_path: Path) -> None:
    result, wall = ffmpeg_record(rtsp_server.url("/cam1", RTSP_USER, "wrong"), tmp_path / "x.mp4", 1)
    assert result.returncode == 1
    assert "401" in result.stderr, result.stderr
    result, _ = ffmpeg_record(rtsp_server.url("/cam1"), tmp_path / "y.mp4", 1)
    assert result.returncode == 1
    assert "401" in result.stderr, result.stderr
    assert wall < 5


def test_unknown_mount_is_404(rtsp_server: RtspServer, tmp_path: Path) -> None:
    result, wall = ffmpeg_record(rtsp_server.auth_url("/nope"), tmp_path / "x.mp4", 1)
    assert result.returncode == 1
    assert "404" in result.stderr, result.stderr
    assert wall < 5


def test_audio_mount_has_pcm_mulaw(rtsp_server: RtspServer, tmp_path: Path) -> None:
    out = tmp_path / "audio.mkv"
    result, _ = ffmpeg_record(rtsp_server.auth_url("/audio"), out, 3)
    assert result.returncode == 0, result.stderr
    info = probe(out)
    assert info["video_codec"] == "h264"
    assert info["audio_codec"] == "pcm_mulaw"
    assert decode_ok(out)


def wait_for_media(proc: subprocess.Popen[str], deadline: float) -> None:
    """Read ``-progress pipe:1`` output until ffmpeg reports out_time_us > 0 (media is flowing)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not sel.select(timeout=remaining):
                break
            line = proc.stdout.readline()
            if not line:
                break
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and value.isdigit() and int(value) > 0:
                return
    raise AssertionError("ffmpeg did not start receiving media in time")


def test_pause_stalls_and_ffmpeg_times_out(rtsp_server: RtspServer, tmp_path: Path) -> None:
    cmd = [
        FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-y", "-rtsp_transport", "tcp",
        "-timeout", "2000000", "-i", rtsp_server.auth_url("/cam3"), "-t", "60", "-c", "copy",
        "-progress", "pipe:1", "-stats_period", "0.5", str(tmp_path / "stall.mkv"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_media(proc, time.monotonic() + 10)
        rtsp_server.pause()
        assert rtsp_server.paused
        paused_at = time.monotonic()
        proc.wait(timeout=15)
        gave_up = time.monotonic() - paused_at
        print(f"ffmpeg gave up {gave_up:.2f} s after SIGSTOP (rc {proc.returncode})")
        assert gave_up < 10
        rtsp_server.resume()
        result, _ = ffmpeg_record(rtsp_server.auth_url("/cam3"), tmp_path / "after.mkv", 1)
        assert result.returncode == 0, result.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_kill_then_start_again_on_same_port(rtsp_server: RtspServer, tmp_path: Path) -> None:
    port, first_pid = rtsp_server.port, rtsp_server.pid
    assert first_pid is not None
    result, _ = ffmpeg_record(rtsp_server.auth_url("/cam4"), tmp_path / "a.mkv", 1)
    assert result.returncode == 0, result.stderr

    assert rtsp_server.kill() == -9
    assert not pid_alive(first_pid)
    result, wall = ffmpeg_record(rtsp_server.auth_url("/cam4"), tmp_path / "b.mkv", 1)
    assert result.returncode == 1 and "refused" in result.stderr.lower(), result.stderr
    assert wall < 5

    rtsp_server.start()
    assert rtsp_server.port == port and rtsp_server.pid != first_pid
    print(f"RTSP server restart took {rtsp_server.startup_seconds:.3f} s")
    result, _ = ffmpeg_record(rtsp_server.auth_url("/cam4"), tmp_path / "c.mkv", 2)
    assert result.returncode == 0, result.stderr
    assert decode_ok(tmp_path / "c.mkv")

    second_pid = rtsp_server.pid
    assert second_pid is not None
    assert rtsp_server.stop() == 0  # SIGTERM: clean exit
    assert not pid_alive(second_pid)


def test_moto_put_get_kill_start(moto_server: MotoServer) -> None:
    s3 = moto_server.client()
    s3.create_bucket(Bucket="cctv-test")
    s3.put_object(Bucket="cctv-test", Key="cam1/seg.mp4", Body=b"hello segment")
    got = s3.get_object(Bucket="cctv-test", Key="cam1/seg.mp4")["Body"].read()
    assert got == b"hello segment"

    port = moto_server.port
    moto_server.kill()
    with pytest.raises(EndpointConnectionError):
        moto_server.client(retries={"max_attempts": 1}).list_buckets()

    moto_server.start()
    assert moto_server.port == port
    assert s3.list_buckets()["Buckets"] == []
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket="cctv-test")

    s3.create_bucket(Bucket="cctv-test")
    moto_server.reset()
    assert s3.list_buckets()["Buckets"] == []
