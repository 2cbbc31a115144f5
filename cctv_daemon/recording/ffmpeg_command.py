"""The ffmpeg command line for one camera: one long-lived `-f segment` process writing crash-safe segments."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import ffmpeg

from cctv_daemon.config.model import CameraConfig
from cctv_daemon.core import constants as c
from cctv_daemon.core.redact import redact
from cctv_daemon.recording import live
from cctv_daemon.segments import staging

# Fragmented MP4 flushed at every keyframe: a segment cut by SIGKILL or power loss still plays up to its
# last complete fragment (see docs/segment-lifecycle.md and FIELD-NOTES).
SEGMENT_FORMAT_OPTIONS = "movflags=+frag_keyframe+empty_moov+default_base_moof:flush_packets=1"
# RTSP input goes through a one-entry concat playlist written to ffmpeg's stdin, so that the URL with its
# credentials is never in ffmpeg's argv (visible to every user in `ps` and /proc) nor in any file.
RTSP_PROTOCOLS = "pipe,rtsp,rtsps,tcp,udp,rtp,srtp,tls,crypto,httpproxy"
TEST_SOURCE_SIZE = "640x360"
TEST_SOURCE_RATE = 10


@dataclass(frozen=True)
class SegmentOutput:
    staging_dir: Path
    run_id: str

    @property
    def list_file(self) -> Path:
        return staging.list_path(self.staging_dir, self.run_id)

    @property
    def pattern(self) -> Path:
        return self.staging_dir / f"{self.run_id}_%06d{c.SEGMENT_EXT}"


def camera_url(cam: CameraConfig) -> str:
    """The RTSP URL with credentials inserted (a secret: only ever logged through redact())."""
    if cam.url:
        url = cam.url
    else:
        host = cam.ipAddress or ""
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 literal
        path = cam.path if cam.path.startswith("/") else "/" + cam.path
        url = f"rtsp://{host}:{cam.port}{path}"
    if cam.userName is None:
        return url
    parts = urlsplit(url)
    userinfo = quote(cam.userName, safe="")
    if cam.password is not None:
        userinfo += ":" + quote(cam.password.get_secret_value(), safe="")
    netloc = f"{userinfo}@{parts.netloc.rsplit('@', 1)[-1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def source_label(cam: CameraConfig) -> str | None:
    """How ffmpeg's errors name an RTSP camera's input instead of "pipe:0" (the URL comes in the ffconcat playlist on
    stdin): scheme://host:port/path, credentials replaced by REDACTED, the query (it may hold a token) left out."""
    if cam.source != "rtsp":
        return None
    parts = urlsplit(camera_url(cam))
    cred = f"{c.REDACTED}@" if "@" in parts.netloc else ""
    return redact(f"{parts.scheme}://{cred}{parts.netloc.rsplit('@', 1)[-1]}{parts.path}")


def rtsp_transport(cam: CameraConfig, fallback: str | None = None) -> str:
    """The RTSP lower transport to ask for: rtspTransport, where "auto" is TCP until the camera refused it with
    "461 Unsupported transport" (then the camera sets ``fallback`` to "udp" for the rest of the run)."""
    if cam.rtspTransport == "auto":
        return fallback or "tcp"
    return cam.rtspTransport


def input_playlist(cam: CameraConfig, transport: str | None = None) -> bytes | None:
    """What to write to ffmpeg's stdin: for RTSP, the ffconcat playlist naming the camera URL (a secret).
    ``transport``: the RTSP transport to use (default: rtsp_transport(cam))."""
    if cam.source != "rtsp":
        return None
    url = camera_url(cam).replace("'", "'\\''")  # ffconcat: close the quote, escaped quote, reopen
    # The transport, and a socket timeout as a safety net behind the daemon's own stall detection (which fires
    # after stallTimeout): ffmpeg gives up on a silent socket after ~2x the timeout.
    timeout_us = int(cam.stallTimeout * 1_000_000)
    transport = transport or rtsp_transport(cam)
    return (
        f"ffconcat version 1.0\nfile '{url}'\noption rtsp_transport {transport}\noption timeout {timeout_us}\n"
        f"option analyzeduration {c.RTSP_ANALYZE_DURATION_US}\n"
    ).encode()


def _input(cam: CameraConfig) -> Any:
    if cam.source == "rtsp":
        return ffmpeg.input("pipe:0", f="concat", safe="0", protocol_whitelist=RTSP_PROTOCOLS,
                            analyzeduration=c.RTSP_ANALYZE_DURATION_US)
    if cam.source == "webcam":
        opts: dict[str, Any] = {}
        if cam.frameRate is not None:
            opts["framerate"] = _num(cam.frameRate)
        if cam.resolution is not None:
            opts["video_size"] = cam.resolution
        if sys.platform == "win32":
            return ffmpeg.input(f"video={cam.device}", f="dshow", **opts)
        return ffmpeg.input(cam.device or "/dev/video0", f="v4l2", **opts)
    size = cam.resolution or TEST_SOURCE_SIZE
    rate = _num(cam.frameRate or TEST_SOURCE_RATE)
    # testsrc draws a running clock (seconds since start); -re paces it at real time.
    return ffmpeg.input(f"testsrc=size={size}:rate={rate}", f="lavfi", re=None)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _video_opts(cam: CameraConfig) -> dict[str, Any]:
    """Stream copy unless the camera must be (re-)encoded: test/webcam sources, or frameRate/resolution set."""
    if cam.source == "rtsp" and not cam.transcodes:
        # H.265 tagged hvc1 (ffmpeg's default is hev1), which Apple players and browsers require. The segment
        # muxer drops a tag that does not fit the codec, so H.264 (and others) keep their usual tag.
        return {"c:v": "copy", "tag:v": "hvc1"}
    rate = cam.frameRate or (TEST_SOURCE_RATE if cam.source == "test" else None)
    opts: dict[str, Any] = {
        "c:v": "libx264",
        "preset": c.X264_PRESET,
        "tune": "zerolatency",
        "pix_fmt": "yuv420p",
        # A keyframe at every segment boundary, so segments are cut exactly at videoDuration.
        "force_key_frames": f"expr:gte(t,n_forced*{cam.videoDuration})",
    }
    if rate is not None:
        opts["r"] = _num(rate)
        opts["g"] = max(1, round(rate))  # one keyframe a second: at most ~1 s lost on a crash
    if cam.resolution is not None and cam.source == "rtsp":
        opts["s"] = cam.resolution
    return opts


def audio_action(cam: CameraConfig, learned_codec: str | None) -> str:
    """What to do with audio: 'none', 'copy' or 'aac'. In auto mode, copy unless the camera's codec (learned
    from ffmpeg's own stream report) cannot go into MP4, e.g. G.711 (pcm_mulaw/pcm_alaw): then AAC."""
    if cam.source != "rtsp" or cam.audio == "none":
        return "none"
    if cam.audio in ("copy", "aac"):
        return cam.audio
    if learned_codec is not None and learned_codec not in c.MP4_COPYABLE_AUDIO:
        return "aac"
    return "copy"


_TEE_SPECIAL = frozenset("\\':|[]")


def tee_escape(value: str) -> str:
    """One level of ffmpeg's av_get_token() quoting: its quote characters, the tee's delimiters and white space
    backslashed (av_get_token would strip white space at either end)."""
    return "".join("\\" + ch if ch in _TEE_SPECIAL or ch.isspace() else ch for ch in value)


def tee_target(slaves: list[tuple[dict[str, str], str]]) -> str:
    """The tee muxer's output name for these (options, file name) slaves. ffmpeg unquotes it twice: once when
    splitting slaves on "|" (the whole slave text), then each option value when splitting options on ":" (so a
    value such as segment_format_options, which has its own ":", is quoted twice)."""
    texts = ["[" + ":".join(f"{k}={tee_escape(v)}" for k, v in opts.items()) + "]" + name for opts, name in slaves]
    return "|".join(tee_escape(t) for t in texts)


def live_slave(live_dir: Path) -> tuple[dict[str, str], str]:
    """The live view's HLS output (recording/live.py): video only, fMP4 fragments of ~1 s, a short playlist,
    older fragments deleted, each file written under a temporary name and renamed. `onfail=ignore`: if it
    fails (folder gone, full, unwritable) the tee drops it and the recording goes on untouched."""
    return ({"f": "hls", "onfail": "ignore", "select": "v", "hls_time": str(live.HLS_TIME_S),
             "hls_list_size": str(live.HLS_LIST_SIZE), "hls_segment_type": "fmp4",
             "hls_flags": "delete_segments+omit_endlist+temp_file",
             "hls_segment_filename": str(live_dir / live.FRAGMENT_PATTERN)},
            str(live_dir / live.PLAYLIST))


def build_command(
    cam: CameraConfig, ffmpeg_exe: str, out: SegmentOutput, learned_audio_codec: str | None = None,
    live_dir: Path | None = None,
) -> list[str]:
    """``live_dir``: also write the live view there (the segment muxer then becomes the first slave of a tee
    muxer, with the same options, `onfail=abort`: a failing recording still ends ffmpeg)."""
    inp = _input(cam)
    streams = [inp["v:0"]]
    opts: dict[str, Any] = _video_opts(cam)
    action = audio_action(cam, learned_audio_codec)
    if action == "none":
        opts["an"] = None
    else:
        streams.append(inp["a:0?"])
        opts["c:a"] = "copy" if action == "copy" else "aac"
        if action == "aac":
            opts["b:a"] = c.AAC_BITRATE
    segment_opts: dict[str, str] = {
        "segment_time": str(cam.videoDuration),
        "reset_timestamps": "1",
        "segment_format": "mp4",
        "segment_format_options": SEGMENT_FORMAT_OPTIONS,
        "segment_list": str(out.list_file),
        "segment_list_type": "csv",
        # Only the last entries: ffmpeg rewrites {run}.csv.tmp and renames it over the list after each segment,
        # so the list stays a few kB for a run of months (without it, ~55 bytes a segment forever).
        "segment_list_size": str(staging.LIST_SIZE),
    }
    if live_dir is None:
        target = str(out.pattern)
        opts.update({"f": "segment", **segment_opts})
    else:
        target = tee_target([({"f": "segment", "onfail": "abort", **segment_opts}, str(out.pattern)),
                             live_slave(live_dir)])
        opts["f"] = "tee"
        if opts.get("c:v") == "copy":
            # Stream copy: the tee's stream would get the codec's coarse time base (1/fps) instead of the
            # segment muxer's fine one, and ffmpeg would nudge every frame by one tick ("Non-monotonous DTS" at
            # each frame). The RTP clock's (90 kHz) keeps every timestamp as it came.
            opts["time_base:v"] = "1:90000"
        else:
            # The segment muxer asks encoders for global headers (SPS/PPS in the MP4 header); the tee does not,
            # so ask for them: the recorded segments stay the same bytes as without the live view.
            opts["flags:v"] = "+global_header"
    stream = ffmpeg.output(*streams, target, **opts).global_args(
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "level+info",
        "-nostats",
        "-progress",
        "pipe:1",
        "-stats_period",
        str(c.PROGRESS_PERIOD_S),
    )
    args: list[str] = ffmpeg.compile(stream, cmd=ffmpeg_exe)
    return args
