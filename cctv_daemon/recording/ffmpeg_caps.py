"""What an ffmpeg binary can do, found by trying it, and which binary to use.

"Can do the job" means every ffmpeg feature the daemon uses, for recording AND for `export` (which runs on the
same binary): the ffconcat playlist input with `option` lines (ffmpeg >= 5.0; 4.x answers "unknown keyword
'option'"), the segment muxer with the options we pass, `-progress` with `-stats_period` (>= 4.4), the
`level+` log prefix, `-tag:v hvc1`, the rtsp demuxer, and, when a camera needs them, libx264, lavfi, aac and
the webcam input device. Version numbers are not trusted (git builds say "N-12345-g…"): two tiny real trials
run the same options the recorder and `export` pass, plus the lists of demuxers and encoders.

The result is cached per binary (real path, size, mtime) in the user's cache folder, so `run` and
`check-config` pay the ~0.2 s once per ffmpeg install.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cctv_daemon.config.model import CameraConfig, Config
from cctv_daemon.recording.ffmpeg_command import SEGMENT_FORMAT_OPTIONS, live_slave, tee_target
from cctv_daemon.recording.ffmpeg_locate import FfmpegNotFound, find_ffmpeg

PROBE_VERSION = 3  # bump when the trials change: cached results of older trials are ignored
_TIMEOUT_S = 30.0
_CANNOT_RUN = "cannot run it"

# Feature keys and how they are named to the user.
PLAYLIST = "playlist"
SEGMENT = "segment"
PROGRESS = "progress"
RTSP = "rtsp"
LAVFI = "lavfi"
LIBX264 = "libx264"
AAC = "aac"
WEBCAM = "webcam"
LIVE = "live"  # optional: without it cameras record without live view
FEATURES: dict[str, str] = {
    PLAYLIST: "ffconcat playlists with `option` lines (ffmpeg >= 5.0)",
    SEGMENT: "the segment muxer with fragmented-MP4 options, CSV segment list and -tag:v hvc1",
    PROGRESS: "-progress with -stats_period (ffmpeg >= 4.4)",
    RTSP: "the rtsp demuxer",
    LAVFI: "the lavfi input (test pattern)",
    LIBX264: "the libx264 encoder",
    AAC: "the aac encoder",
    WEBCAM: "the webcam input device (dshow)" if sys.platform == "win32" else "the webcam input device (v4l2)",
    LIVE: "the tee muxer with an hls output (the live view)",
}
_WEBCAM_DEMUXER = "dshow" if sys.platform == "win32" else "v4l2"


@dataclass(frozen=True)
class Capabilities:
    exe: str
    version: str
    missing: dict[str, str]  # feature key -> what the trial said

    def lacks(self, needed: Iterable[str]) -> list[str]:
        return [f for f in needed if f in self.missing]

    def describe(self, features: Iterable[str]) -> str:
        return "; ".join(f"{FEATURES[f]} ({self.missing[f]})" for f in features)


@dataclass(frozen=True)
class FfmpegChoice:
    exe: str
    capabilities: Capabilities
    why: str | None = None  # set when the ffmpeg on PATH was passed over


class FfmpegUnusable(Exception):
    """No ffmpeg that can do the job. ``key`` is the config key to name ("ffmpegPath"), or None."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# -- what a config needs ------------------------------------------------------------------------------------
def needed_by(cameras: Iterable[CameraConfig]) -> list[str]:
    """The features recording these cameras (and exporting their footage) needs."""
    need = [PLAYLIST, SEGMENT, PROGRESS, LAVFI]  # LAVFI: the recording trial itself runs on it
    for cam in cameras:
        extra: list[str] = []
        if cam.source == "rtsp":
            extra.append(RTSP)
            if cam.audio in ("auto", "aac"):
                extra.append(AAC)  # auto transcodes G.711 to AAC
        if cam.source != "rtsp" or cam.transcodes:
            extra.append(LIBX264)
        if cam.source == "webcam":
            extra.append(WEBCAM)
        need += [f for f in extra if f not in need]
    return need


# -- choosing -----------------------------------------------------------------------------------------------
def choose_ffmpeg(config: Config) -> FfmpegChoice:
    """The binary to record and export with: ``ffmpegPath`` if set (an error if it cannot do the job), else the
    ffmpeg on PATH if it can, else the bundled imageio-ffmpeg binary (with ``why`` saying why)."""
    need = needed_by(config.cameras)
    if config.ffmpegPath:
        try:
            exe = find_ffmpeg(config.ffmpegPath)
        except FfmpegNotFound as exc:
            raise FfmpegUnusable(str(exc), "ffmpegPath") from None
        caps = probe(exe)
        if lacking := caps.lacks(need):
            raise FfmpegUnusable(f"{exe} (ffmpeg {caps.version}) cannot do what cctv-daemon needs; it lacks: "
                                 f"{caps.describe(lacking)}", "ffmpegPath")
        return FfmpegChoice(exe, caps)
    why: str | None = None
    try:
        on_path: str | None = find_ffmpeg(None, bundled=False)
    except FfmpegNotFound:
        on_path = None
    if on_path is not None:
        caps = probe(on_path)
        lacking = caps.lacks(need)
        if not lacking:
            return FfmpegChoice(on_path, caps)
        why = f"the ffmpeg on PATH ({on_path}, version {caps.version}) lacks: {caps.describe(lacking)}"
    try:
        bundled = bundled_ffmpeg()
    except FfmpegNotFound as exc:
        raise FfmpegUnusable(f"{why}; and {exc}" if why else str(exc)) from None
    caps = probe(bundled)
    if lacking := caps.lacks(need):
        msg = f"the bundled ffmpeg ({bundled}, version {caps.version}) lacks: {caps.describe(lacking)}"
        raise FfmpegUnusable(f"{why}; and {msg}" if why else msg)
    return FfmpegChoice(bundled, caps, f"{why}; using the bundled imageio-ffmpeg binary" if why else None)


def bundled_ffmpeg() -> str:
    try:
        import imageio_ffmpeg

        exe: str = imageio_ffmpeg.get_ffmpeg_exe()
        return exe
    except Exception as exc:  # the wheel raises RuntimeError when it has no binary for this platform
        raise FfmpegNotFound(f"no bundled ffmpeg (imageio-ffmpeg: {exc})") from exc


# -- probing ------------------------------------------------------------------------------------------------
_MEMO: dict[str, Capabilities] = {}


def probe(exe: str) -> Capabilities:
    """The capabilities of ``exe`` (cached in memory and on disk per real path + size + mtime)."""
    real = os.path.realpath(exe)
    try:
        st = os.stat(real)
        key = f"{real}|{st.st_size}|{st.st_mtime_ns}|{PROBE_VERSION}"
    except OSError as exc:
        return Capabilities(exe, "?", {f: f"{_CANNOT_RUN}: {exc.strerror}" for f in FEATURES})
    if key in _MEMO:
        return _MEMO[key]
    cache = _cache_file()
    stored = _read_cache(cache).get(key)
    if isinstance(stored, dict) and isinstance(stored.get("missing"), dict):
        caps = Capabilities(exe, str(stored.get("version", "?")), dict(stored["missing"]))
    else:
        caps = run_trials(exe)
        if not any(why.startswith(_CANNOT_RUN) for why in caps.missing.values()):
            _write_cache(cache, key, caps)  # a binary that could not be started is tried again next time
    _MEMO[key] = caps
    return caps


def run_trials(exe: str) -> Capabilities:
    missing: dict[str, str] = {}
    with ThreadPoolExecutor(2) as pool, tempfile.TemporaryDirectory(prefix="cctv-ffmpeg-probe-") as tmp:
        listings = [pool.submit(_listing, exe, what) for what in ("-demuxers", "-encoders")]  # meanwhile
        version, segment = _record_trial(exe, Path(tmp), missing)
        if segment is not None:
            _playlist_trial(exe, Path(tmp), segment, missing)
            _live_trial(exe, Path(tmp), segment, missing)
        else:
            missing.setdefault(PLAYLIST, "not tried: the recording trial failed")
        demuxers, encoders = (f.result() for f in listings)
    for feature, name, listing in ((RTSP, "rtsp", demuxers), (WEBCAM, _WEBCAM_DEMUXER, demuxers),
                                   (LIBX264, "libx264", encoders), (AAC, "aac", encoders)):
        if name not in listing:
            missing[feature] = f"{name} not listed"
    return Capabilities(exe, version, missing)


def _run(args: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    try:
        p = subprocess.run(args, input=stdin, capture_output=True, timeout=_TIMEOUT_S, check=False,
                           stdin=None if stdin is not None else subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", f"{_CANNOT_RUN}: {exc}"
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def _last_error(stderr: str) -> str:
    """The line that says what is wrong: the first naming an unknown keyword or option, else the last."""
    lines = [re.sub(r" @ 0x[0-9a-f]+\]", "]", ln.strip()) for ln in stderr.splitlines() if ln.strip()]
    telling = [ln for ln in lines if re.search(r"unknown keyword|Unrecognized option|not found", ln, re.I)]
    return (telling or lines or ["no output"])[0 if telling else -1][:200]


def _record_trial(exe: str, tmp: Path, missing: dict[str, str]) -> tuple[str, Path | None]:
    """The recorder's global and output options on half a second of test pattern. A refused -stats_period is
    noted and the trial runs again without it, so that the next trial still says what else is lacking."""
    out = tmp / "rec"
    out.mkdir()
    global_args = ["-nostdin", "-loglevel", "level+info", "-nostats", "-progress", "pipe:1", "-stats_period", "5"]
    args = ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=0.5", "-map", "0:v:0", "-c:v", "mpeg4",
            "-tag:v", "hvc1", "-f", "segment", "-segment_time", "1", "-reset_timestamps", "1",
            "-segment_format", "mp4", "-segment_format_options", SEGMENT_FORMAT_OPTIONS,
            "-segment_list", str(out / "list.csv"), "-segment_list_type", "csv", "-segment_list_size", "64",
            str(out / "%06d.mp4")]
    code, stdout, stderr = _run([exe, *global_args, *args])
    if code != 0 and "stats_period" in stderr:
        missing[PROGRESS] = "-stats_period: " + _last_error(stderr)
        code, stdout, stderr = _run([exe, *global_args[:-2], *args])
    m = re.search(r"ffmpeg version (\S+)", stderr)
    version = m.group(1) if m else "?"
    segment = out / "000000.mp4"
    listed = (out / "list.csv").exists() and (out / "list.csv").read_text(errors="replace").strip()
    if code == 0 and segment.exists() and listed:
        if "progress=end" not in stdout:
            missing.setdefault(PROGRESS, "no -progress report")
        return version, segment
    if "lavfi" in stderr and "Unknown input format" in stderr:
        missing[LAVFI] = _last_error(stderr)
    missing[SEGMENT] = _last_error(stderr)
    return version, None


def _playlist_trial(exe: str, tmp: Path, segment: Path, missing: dict[str, str]) -> None:
    """The RTSP input's shape (an ffconcat playlist with `option` lines on stdin) and `export`'s options."""
    quoted = str(segment.resolve()).replace("'", "'\\''")  # file: or it is taken as relative to pipe:0
    playlist = f"ffconcat version 1.0\nfile 'file:{quoted}'\noption analyzeduration 0\noption probesize 4096\n"
    clip = tmp / "clip.mp4"
    args = [exe, "-hide_banner", "-nostdin", "-v", "error", "-f", "concat", "-safe", "0",
            "-protocol_whitelist", "file,pipe", "-analyzeduration", "1000000", "-ss", "0", "-to", "0.3",
            "-i", "pipe:0", "-map", "0",
            "-c", "copy", "-progress", "pipe:1", "-nostats", "-f", "mp4", str(clip)]
    code, stdout, stderr = _run(args, stdin=playlist.encode())
    if code != 0 or not clip.exists() or "progress=end" not in stdout:
        missing[PLAYLIST] = _last_error(stderr)


def _live_trial(exe: str, tmp: Path, segment: Path, missing: dict[str, str]) -> None:
    """The recorder's output with the live view: a tee muxer whose first slave is the segment muxer (options as
    the recording passes them, inside the tee's quoting) and whose second is the hls one (live_slave()), in
    both shapes: encoding (`-flags:v +global_header`) and stream copy of the recording trial's segment
    (`-time_base:v`)."""
    shapes = {"enc": ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1.5", "-map", "0:v:0",
                      "-c:v", "mpeg4", "-g", "5", "-flags:v", "+global_header"],
              "copy": ["-i", str(segment), "-map", "0:v:0", "-c:v", "copy", "-time_base:v", "1:90000"]}
    for name, inp in shapes.items():
        out, live_dir = tmp / f"tee-{name}", tmp / f"live-{name}"
        out.mkdir()
        live_dir.mkdir()
        seg = {"f": "segment", "onfail": "abort", "segment_time": "1", "reset_timestamps": "1",
               "segment_format": "mp4", "segment_format_options": SEGMENT_FORMAT_OPTIONS,
               "segment_list": str(out / "list.csv"), "segment_list_type": "csv", "segment_list_size": "64"}
        target = tee_target([(seg, str(out / "%06d.mp4")), live_slave(live_dir)])
        code, _stdout, stderr = _run([exe, "-hide_banner", "-nostdin", "-v", "error", *inp, "-f", "tee", target])
        if code != 0 or not (out / "000000.mp4").exists() or not (live_dir / "live.m3u8").exists() \
                or stderr.strip():
            missing[LIVE] = f"{name}: {_last_error(stderr)}"
            return


def _listing(exe: str, what: str) -> set[str]:
    """Names in `ffmpeg -demuxers` / `-encoders` (second column of each entry line)."""
    _, stdout, _ = _run([exe, "-hide_banner", what])
    names: set[str] = set()
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            names.update(parts[1].split(","))
    return names


# -- cache --------------------------------------------------------------------------------------------------
def _cache_file() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cctv-daemon" / "ffmpeg-capabilities.json"


def _read_cache(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, caps: Capabilities) -> None:
    """Best effort: a service user without a writable home simply probes at every start."""
    try:
        data = _read_cache(path)
        data[key] = {"version": caps.version, "missing": caps.missing}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
