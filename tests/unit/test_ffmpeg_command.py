from __future__ import annotations

from pathlib import Path

import pytest

from cctv_daemon.config.model import CameraConfig
from cctv_daemon.recording.ffmpeg_command import SegmentOutput, audio_action, build_command, camera_url, input_playlist
from cctv_daemon.recording.ffmpeg_process import describe

OUT = SegmentOutput(Path("/rec/.cctv/staging/gate"), "r20261121T100000Z-abcdef")


def cam(**kw: object) -> CameraConfig:
    base: dict[str, object] = {"cameraName": "gate", "videoFeedId": "gate-main", "ipAddress": "10.0.0.5"}
    base.update(kw)
    return CameraConfig(**base)  # type: ignore[arg-type]


def opt(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_rtsp_stream_copy_segment_muxer_tcp_timeout() -> None:
    c = cam(videoDuration=600, stallTimeout=10)
    args = build_command(c, "/usr/bin/ffmpeg", OUT)
    assert args[0] == "/usr/bin/ffmpeg"
    assert opt(args, "-f") == "concat" and opt(args, "-i") == "pipe:0"  # the URL comes on stdin
    playlist = (input_playlist(c) or b"").decode()
    assert "file 'rtsp://10.0.0.5:554/'" in playlist
    assert "option rtsp_transport tcp" in playlist
    assert "option analyzeduration 1000000" in playlist and opt(args, "-analyzeduration") == "1000000"
    assert "option timeout 10000000" in playlist  # ffmpeg gives up after ~2x: a safety net behind stall detection
    assert opt(args, "-c:v") == "copy"
    assert args[args.index("-f", args.index("pipe:0")) + 1] == "segment"
    assert opt(args, "-segment_time") == "600"
    assert opt(args, "-reset_timestamps") == "1"
    assert "frag_keyframe" in opt(args, "-segment_format_options")
    assert "flush_packets=1" in opt(args, "-segment_format_options")
    assert opt(args, "-segment_list") == str(OUT.list_file)
    assert opt(args, "-segment_list_type") == "csv"
    assert opt(args, "-segment_list_size") == "64"  # bounded list: ffmpeg rewrites and renames it (issue 12, 16)
    assert args[args.index("-progress") + 1] == "pipe:1"
    assert str(OUT.pattern) in args
    assert "libx264" not in args


def test_rtsp_url_from_ip_port_path_with_credentials_escaped() -> None:
    c = cam(port=8554, path="Streaming/Channels/101", userName="ad min", password="p@ss:w/rd")
    assert camera_url(c) == "rtsp://ad%20min:p%40ss%3Aw%2Frd@10.0.0.5:8554/Streaming/Channels/101"


def test_rtsp_full_url_gets_credentials_inserted() -> None:
    c = cam(ipAddress=None, url="rtsp://cam.local/live?ch=1", userName="admin", password="pw123")
    assert camera_url(c) == "rtsp://admin:pw123@cam.local/live?ch=1"


def test_ipv6_literal_is_bracketed() -> None:
    assert camera_url(cam(ipAddress="fe80::1")) == "rtsp://[fe80::1]:554/"


def test_password_is_never_on_the_command_line() -> None:
    c = cam(userName="admin", password="Sup3r-Secret")
    args = build_command(c, "ffmpeg", OUT)
    assert not any("Sup3r-Secret" in a or "admin" in a for a in args)  # not in `ps`, not in /proc/PID/cmdline
    assert b"rtsp://admin:Sup3r-Secret@10.0.0.5:554/" in (input_playlist(c) or b"")  # only on ffmpeg's stdin
    assert "Sup3r-Secret" not in describe(args)


def test_playlist_quotes_are_escaped() -> None:
    c = cam(ipAddress=None, url="rtsp://h/it's", userName="u", password="p")
    assert b"file 'rtsp://u:p@h/it'\\''s'" in (input_playlist(c) or b"")


def test_non_rtsp_sources_need_no_stdin() -> None:
    assert input_playlist(cam(ipAddress=None, source="test")) is None


def test_transcode_only_when_frame_rate_or_resolution_set() -> None:
    args = build_command(cam(frameRate=5, resolution="1280x720", videoDuration=60), "ffmpeg", OUT)
    assert opt(args, "-c:v") == "libx264"
    assert opt(args, "-r") == "5"
    assert opt(args, "-g") == "5"
    assert opt(args, "-s") == "1280x720"
    assert opt(args, "-force_key_frames") == "expr:gte(t,n_forced*60)"


def test_test_source_is_real_time_lavfi() -> None:
    args = build_command(cam(ipAddress=None, source="test", resolution="320x240", frameRate=5), "ffmpeg", OUT)
    assert opt(args, "-f") == "lavfi"
    assert "-re" in args
    assert opt(args, "-i") == "testsrc=size=320x240:rate=5"
    assert "-an" in args


@pytest.mark.parametrize(
    ("platform", "fmt", "device"), [("linux", "v4l2", "/dev/video2"), ("win32", "dshow", "video=Integrated Camera")]
)
def test_webcam_input_per_platform(monkeypatch: pytest.MonkeyPatch, platform: str, fmt: str, device: str) -> None:
    monkeypatch.setattr("sys.platform", platform)
    dev = "/dev/video2" if platform == "linux" else "Integrated Camera"
    args = build_command(cam(ipAddress=None, source="webcam", device=dev), "ffmpeg", OUT)
    assert opt(args, "-f") == fmt
    assert opt(args, "-i") == device
    assert opt(args, "-c:v") == "libx264"


@pytest.mark.parametrize(
    ("mode", "learned", "expected"),
    [
        ("auto", None, "copy"),
        ("auto", "aac", "copy"),
        ("auto", "pcm_mulaw", "aac"),
        ("auto", "pcm_alaw", "aac"),
        ("none", "aac", "none"),
        ("aac", None, "aac"),
        ("copy", "pcm_mulaw", "copy"),
    ],
)
def test_audio_decision(mode: str, learned: str | None, expected: str) -> None:
    assert audio_action(cam(audio=mode), learned) == expected


def test_audio_maps_optional_stream_and_aac_bitrate() -> None:
    args = build_command(cam(), "ffmpeg", OUT, learned_audio_codec="pcm_mulaw")
    assert "0:a:0?" in args
    assert opt(args, "-c:a") == "aac"
    assert "-an" not in build_command(cam(), "ffmpeg", OUT)
    assert "-an" in build_command(cam(audio="none"), "ffmpeg", OUT)


def test_rtsp_transport_key_sets_the_playlist_transport() -> None:
    assert "option rtsp_transport tcp\n" in (input_playlist(cam()) or b"").decode()
    assert "option rtsp_transport udp\n" in (input_playlist(cam(rtspTransport="udp")) or b"").decode()
    auto = cam(rtspTransport="auto")
    assert "option rtsp_transport tcp\n" in (input_playlist(auto) or b"").decode()  # TCP until a 461
    assert "option rtsp_transport udp\n" in (input_playlist(auto, "udp") or b"").decode()


def test_stream_copy_is_tagged_hvc1_and_transcodes_are_not() -> None:
    assert opt(build_command(cam(), "ffmpeg", OUT), "-tag:v") == "hvc1"  # the segment muxer drops it for H.264
    assert "-tag:v" not in build_command(cam(frameRate=5), "ffmpeg", OUT)
