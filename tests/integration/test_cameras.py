"""The cameras and ffmpegs people actually have, against the real GStreamer RTSP server and real ffmpeg builds:
H.265 (tagged hvc1), cameras that refuse RTSP over TCP, passwords full of URL characters over basic and digest
auth, and an ffmpeg 4.x on PATH or in ffmpegPath. One short recording per kind (1 s segments)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DaemonFactory
from tests.support.daemon import wait_for
from tests.support.media import decode_ok, make_h265, probe, video_tag
from tests.support.rtsp import RtspServer

USER = "cam admin"
# Every character that means something in a URL, plus a space.
PASSWORD = "p@ss:w/rd #5% !x y"


def camera(server: RtspServer, mount: str, name: str = "cam", **extra: object) -> dict[str, object]:
    cfg: dict[str, object] = {"cameraName": name, "url": server.url(mount), "videoDuration": 1, **extra}
    if server.user is not None:
        cfg.update(userName=server.user, password=server.password)
    return cfg


@pytest.fixture
def kinds_server(h264_file: Path) -> Iterator[RtspServer]:
    """/h265 (H.265), /udp (H.264, refuses TCP with 461), no auth."""
    server = RtspServer({"/h265": ("h265", make_h265()), "/udp": ("video-udp", h264_file)})
    try:
        yield server.start()
    finally:
        server.close()


def test_h265_camera_is_stream_copied_and_tagged_hvc1(kinds_server: RtspServer,
                                                      daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"cameras": [camera(kinds_server, "/h265")]})
    segs = d.wait_segments("cam", 2, timeout=60)
    for p in segs[:2]:
        info = probe(p)
        assert info["video_codec"] == "hevc", info
        assert video_tag(p) == "hvc1", p  # ffmpeg's default for stream copy would be hev1
        assert decode_ok(p), p


@pytest.mark.parametrize("transport", ["udp", "auto"])
def test_udp_only_camera_records_with_udp_or_auto(kinds_server: RtspServer, daemon_factory: DaemonFactory,
                                                  transport: str) -> None:
    d = daemon_factory({"cameras": [camera(kinds_server, "/udp", rtspTransport=transport)]})
    segs = d.wait_segments("cam", 2, timeout=60)
    assert all(decode_ok(p) for p in segs[:2])
    if transport == "auto":
        fallbacks = d.events("rtsp_transport_fallback")
        assert len(fallbacks) == 1 and fallbacks[0]["transport"] == "udp", fallbacks
        assert "461" in fallbacks[0]["reason"]
        # Remembered for the run: after the fallback, ffmpeg is never asked for TCP again.
        assert len(d.events("camera_state", state="transport_refused")) == 0


def test_udp_only_camera_with_tcp_reports_transport_refused(kinds_server: RtspServer,
                                                            daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"cameras": [camera(kinds_server, "/udp")], "supervisor": {"backoffCap": 30}})
    ev = d.wait_event("camera_state", 30, state="transport_refused")[0]
    assert ev["level"] == "error" and "rtspTransport" in ev["reason"] and "461" in ev["reason"], ev
    status = d.cli("status", "--json")
    assert '"transport_refused"' in status.stdout, status.stdout
    # Not a crash loop: it waits at the backoff cap before trying again.
    assert ev["retry_in"] >= 20, ev
    assert len(d.events("camera_state", state="starting")) == 1
    assert not d.segments("cam")


@pytest.mark.parametrize("auth", ["basic", "digest"])
def test_password_with_url_characters_over_basic_and_digest(h264_file: Path, daemon_factory: DaemonFactory,
                                                            auth: str) -> None:
    with RtspServer({"/cam": ("video", h264_file)}, user=USER, password=PASSWORD, auth=auth) as server:
        d = daemon_factory({"cameras": [camera(server, "/cam")], "logging": {"level": "debug"}})
        d.wait_event("camera_state", 30, state="recording")
        # The password is in no argv: not the daemon's, not ffmpeg's (world-readable in `ps` and /proc).
        ffmpegs = wait_for(lambda: d.ffmpegs(), 10, "ffmpeg running")
        assert d.proc is not None
        for pid in [d.proc.pid, *(p.pid for p in ffmpegs)]:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert PASSWORD not in argv and "p%40ss" not in argv, pid
        segs = d.wait_segments("cam", 2, timeout=60)
        assert decode_ok(segs[0])
        assert d.stop() == 0
        out = d.output() + "".join(p.read_text(errors="replace")
                                   for p in (d.state_dir / "logs").glob("*.log*"))
        for form in (PASSWORD, "p%40ss%3Aw%2Frd", "p@ss:w/rd"):
            assert form not in out, f"password ({form!r}) in the logs"


def test_old_ffmpeg_on_path_falls_back_to_bundled_binary(ffmpeg_4_2_2: Path, h264_file: Path, tmp_path: Path,
                                                         daemon_factory: DaemonFactory) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ffmpeg").symlink_to(ffmpeg_4_2_2)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with RtspServer({"/cam": ("video", h264_file)}) as server:
        d = daemon_factory({"cameras": [camera(server, "/cam")]}, env)
        d.wait_segments("cam", 2, timeout=60)
        ev = d.events("ffmpeg_fallback")
        assert len(ev) == 1, d.events("ffmpeg_chosen")
        assert "imageio_ffmpeg" in ev[0]["ffmpeg"] and str(bindir / "ffmpeg") in ev[0]["reason"]
        assert "unknown keyword 'option'" in ev[0]["reason"] and "4.2.2" in ev[0]["reason"]
        assert all("imageio_ffmpeg" in p.cmdline()[0] for p in d.ffmpegs())
        checked = d.cli("check-config", env=env)
        assert checked.returncode == 0, checked.stderr
        assert "imageio_ffmpeg" in checked.stdout and "warning: the ffmpeg on PATH" in checked.stderr


def test_old_ffmpeg_in_ffmpeg_path_is_a_config_error(ffmpeg_4_2_2: Path, tmp_path: Path,
                                                     daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"cameras": [{"cameraName": "cam", "ipAddress": "127.0.0.1"}],
                        "ffmpegPath": str(ffmpeg_4_2_2)}, start=False)
    for cmd in ("check-config", "run"):
        res = d.cli(cmd, timeout=60)
        assert res.returncode == 2, (cmd, res.stdout, res.stderr)
        assert "ffmpegPath:" in res.stderr and "4.2.2" in res.stderr, res.stderr
        assert "ffconcat playlists with `option` lines" in res.stderr, res.stderr
        assert "-stats_period" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (d.save_path / ".cctv").exists()  # `run` took no lock, created nothing
