"""One running ffmpeg: its pipes read by the process's pipe hub (recording/pipe_hub.py: one thread for every
ffmpeg; both pipes at once over the run's first ANCHOR_WINDOW_US of media (the camera measures the run's anchor
from the progress reports, and its stream report names the audio codec), then at most every PIPE_COALESCE_S, its
exit still seen at once; or every window_for(stallTimeout)), its progress and its errors made into facts.

ffmpeg's exit status means nothing (it exits 0 when the server vanishes), so what went wrong is read from
its stderr: every line is read (credentials redacted) and known failures are classified. What reaches the log
(log_level_for): ffmpeg's warnings and errors at their level; its informational output (stream reports,
"Input #0", "Stream mapping", encoder settings and statistics, "Opening ... for writing") at debug only; its
version banner (version, built with, configuration, lib* versions) never.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections.abc import Callable

import structlog

from cctv_daemon.core import constants as c
from cctv_daemon.core.child_env import ffmpeg_env
from cctv_daemon.core.clock import Clock
from cctv_daemon.core.redact import redact
from cctv_daemon.recording import process_control
from cctv_daemon.recording.pipe_hub import PipeHub, shared_hub, window_for

log = structlog.get_logger("cctv_daemon.ffmpeg")

_LEVEL = re.compile(r"\[(panic|fatal|error|warning|info|verbose|debug|trace)\]")
_LEVEL_MAP = {
    "panic": "error",
    "fatal": "error",
    "error": "error",
    "warning": "warning",
    "info": "info",
    "verbose": "debug",
    "debug": "debug",
    "trace": "debug",
}
_OUT_TIME_US = re.compile(rb"^out_time_us=(-?\d+)\r?$", re.M)
_FRAME = re.compile(rb"^frame=(\d+)\r?$", re.M)
_AUDIO_STREAM = re.compile(r"Stream #0:\d+.*?: Audio: (\w+)")
# Harmless once per start with live RTSP sources (FIELD-NOTES): kept, but not shouted.
# An RTSP camera's URL reaches ffmpeg in an ffconcat playlist on stdin: ffmpeg names that input "pipe:0" ("pipe:0:
# Connection refused") and the concat demuxer quotes the whole URL. Both are rewritten to the camera's source label.
_PIPE_INPUT = re.compile(r"\bpipe:0\b")
_CONCAT_OPEN = re.compile(r"^\[concat\]\s+Impossible to open '.*'$")
_HARMLESS = ("Timestamps are unset in a packet", "Non-monotonous DTS", "Non-monotonic DTS")
# The version banner (-hide_banner hides it, but not in every ffmpeg build or wrapper): never logged.
_BANNER = re.compile(
    r"(ffmpeg|ffprobe) version |built with |configuration: "
    r"|lib(avutil|avcodec|avformat|avdevice|avfilter|swscale|swresample|postproc)\s+\d+\.\s*\d+"
)
# The live view's hls muxer says "Opening '…' for writing" at info twice per fragment (a second): lines that
# _stderr_line would drop anyway (is_live_output, below info), recognised on the bytes before any decoding.
_LIVE_CHATTER = re.compile(rb"\[hls @ 0x[0-9a-f]+\] \[(?:info|verbose|debug|trace)\] ")
# ffmpeg's informational report, for lines that come without a [level] tag: debug, not info.
_REPORT = re.compile(
    r"(Input|Output) #\d|Stream #\d|Stream mapping:|Duration: |Metadata:|Side data:|encoder\s+:|Press \[q\]"
    r"|frame=\s*\d|size=\s*\d|video:\d|Exiting normally|\[\w+\]\s"
)

# Failure kinds, most specific first.
AUTH_FAILED = "auth_failed"
NOT_FOUND = "not_found"
DISK_FULL = "disk_full"
UNWRITABLE = "unwritable"
REFUSED = "connection_refused"
AUDIO_UNSUPPORTED = "audio_unsupported"
TRANSPORT_REFUSED = "transport_refused"
NO_DEVICE = "no_device"
_CLASSIFY: tuple[tuple[str, str], ...] = (
    ("401 Unauthorized", AUTH_FAILED),
    ("403 Forbidden", AUTH_FAILED),
    ("404 Not Found", NOT_FOUND),
    ("461 Unsupported transport", TRANSPORT_REFUSED),
    ("No space left on device", DISK_FULL),
    ("Disk quota exceeded", DISK_FULL),
    ("Read-only file system", UNWRITABLE),
    ("Permission denied", UNWRITABLE),
    ("Connection refused", REFUSED),
    ("codec not currently supported in container", AUDIO_UNSUPPORTED),
    ("Could not find tag for codec pcm", AUDIO_UNSUPPORTED),
    ("No such file or directory", NO_DEVICE),
)


class FfmpegProcess:
    def __init__(
        self,
        args: list[str],
        camera: str,
        clock: Clock,
        on_line: Callable[[str, str], None] | None = None,
        stdin_data: bytes | None = None,
        on_exit: Callable[[], None] | None = None,
        hub: PipeHub | None = None,
        source_label: str | None = None,
        stall_timeout_s: float | None = None,
    ) -> None:
        """``source_label``: what names the input in ffmpeg's errors instead of "pipe:0" (name_input).
        ``stall_timeout_s``: the camera's stallTimeout; its pipes then let the hub wait window_for(it)."""
        self.args = args
        self.source_label = source_label
        self.camera = camera
        self.clock = clock
        self._on_line = on_line
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self.started_at = clock.monotonic()
        self.last_advance = self.started_at  # monotonic time media time last moved forward (dated back, see _progress)
        self.reported_at = self.started_at  # monotonic time the block naming out_time_us was read (not dated back)
        self.out_time_us = -1
        self.frames = 0
        self.failure: str | None = None
        self.audio_codec: str | None = None
        self.last_error: str | None = None
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ffmpeg_env(),  # not the daemon's environment: it may hold a ${VAR} camera password
            **process_control.spawn_kwargs(),
        )
        self.pid = self.proc.pid
        if stdin_data is not None and self.proc.stdin is not None:
            try:  # a few hundred bytes: fits the pipe buffer, never blocks
                self.proc.stdin.write(stdin_data)
                self.proc.stdin.close()
            except OSError:
                pass  # ffmpeg died at once; its exit is handled like any other
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pending_out = b""
        self._pending_err = b""
        self._open_pipes = 2
        self._pipes_done = threading.Event()
        self._hub = hub or shared_hub()
        self._coalesced = False  # both pipes are read at once until media time passes ANCHOR_WINDOW_US
        window = None if stall_timeout_s is None else window_for(stall_timeout_s)
        self._hub.add(self.proc.stdout, self._on_stdout, urgent=True, window=window)
        self._hub.add(self.proc.stderr, self._on_stderr, urgent=True, window=window)

    # -- state read by the camera's state machine --------------------------------------------------
    def poll(self) -> int | None:
        return self.proc.poll()

    def snapshot(self) -> tuple[float, int, str | None]:
        with self._lock:
            return self.last_advance, self.out_time_us, self.failure

    @property
    def has_advanced(self) -> bool:
        with self._lock:
            return self.out_time_us > 0

    def polite_stop(self) -> None:
        process_control.polite_stop(self.proc)

    def kill(self) -> None:
        process_control.force_kill(self.proc)

    def join_readers(self, timeout: float = 2.0) -> None:
        """Wait until both pipes reached their end (everything ffmpeg wrote has been handled)."""
        self._pipes_done.wait(timeout)

    def close_pipes(self) -> None:
        """After join_readers: pipes not at their end yet are closed by the hub (never under its feet)."""
        if not self._pipes_done.is_set():
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    self._hub.discard(pipe)

    # -- readers (called on the hub's thread) -------------------------------------------------------
    def _pipe_ended(self) -> None:
        with self._lock:
            self._open_pipes -= 1
            done = self._open_pipes == 0
        if done:
            self._pipes_done.set()
            if self._on_exit is not None:
                self._on_exit()  # both pipes closed: ffmpeg has exited (or is exiting), all it wrote is handled

    def _on_stdout(self, chunk: bytes) -> None:
        """ffmpeg writes one `key=value` block per PROGRESS_PERIOD_S, ending `progress=...`, in one write: pick
        the two keys out of whole blocks (a Python loop per line cost more than the rest of the reading)."""
        if not chunk:
            self._pipe_ended()
            return
        pending = self._pending_out + chunk
        end = pending.rfind(b"\n")
        last = pending.rfind(b"progress=", 0, end if end >= 0 else 0)
        if last < 0:
            self._pending_out = pending  # no complete block yet
            return
        cut = pending.index(b"\n", last) + 1
        self._pending_out = pending[cut:]
        self._progress_blocks(pending[:cut])

    def _progress_blocks(self, text: bytes) -> None:
        """One or more complete blocks: the newest out_time_us and frame count win."""
        times = _OUT_TIME_US.findall(text)
        frames = _FRAME.findall(text)
        self._progress(int(times[-1]) if times else -1, int(frames[-1]) if frames else 0)

    def _progress(self, out_time: int, frames: int) -> None:
        now = self.clock.monotonic()
        # Once coalesced, a block may have waited up to the hub's coalescing delay in the pipe: date the advance
        # that much earlier, so that a stall is never detected later than stallTimeout after it (at most that much
        # sooner). The run's anchor needs the opposite bound (media time `out` arrived no later than now), and
        # reads its reports at once: reported_at.
        seen = now - self._hub.coalesce_s if self._coalesced else now
        if not self._coalesced and out_time > c.ANCHOR_WINDOW_US:
            self._coalesced = True
            assert self.proc.stdout is not None and self.proc.stderr is not None
            self._hub.demote(self.proc.stdout)
            self._hub.demote(self.proc.stderr)  # its lines wait with the reports; its end (the exit) does not
        with self._lock:
            # Media flows when media time OR the frame count grows: a camera whose timestamps jump back keeps
            # media time still for a while (or an hour) although frames keep coming; that is not a stall.
            if out_time > self.out_time_us or frames > self.frames:
                self.last_advance = max(self.last_advance, seen)
            if out_time > self.out_time_us:
                self.reported_at = now
            self.out_time_us = max(self.out_time_us, out_time)
            self.frames = max(self.frames, frames)

    def _on_stderr(self, chunk: bytes) -> None:
        if chunk:
            data = self._pending_err + chunk
            end = data.rfind(b"\n") + 1
            self._pending_err = data[end:]
            lines = data[:end].split(b"\n")
        else:  # end of file: a last line without its newline too
            lines, self._pending_err = [self._pending_err], b""
        for raw in lines:
            if raw[:1] == b"[" and _LIVE_CHATTER.match(raw):
                continue
            line = redact(raw.decode("utf-8", "replace").rstrip())
            if line:
                self._stderr_line(line)
        if not chunk:
            self._pipe_ended()

    def _stderr_line(self, line: str) -> None:
        ff_level, text = parse_line(line)
        text = name_input(text, self.source_label)
        if is_live_output(text):
            # The live view's output failing (tmpfs full, folder gone) is not the recording's failure: it must
            # not name the reason of this ffmpeg's eventual exit. Logged as a warning; recording goes on.
            if ff_level in ("error", "warning"):
                log.warning("live_view_output", camera=self.camera, pid=self.pid, line=text)
            return
        audio = _AUDIO_STREAM.search(text)
        with self._lock:
            if audio and self.audio_codec is None:
                self.audio_codec = audio.group(1)
            if ff_level in ("error", None):
                for needle, kind in _CLASSIFY:
                    if needle in text:
                        if self.failure is None or kind == AUDIO_UNSUPPORTED:
                            self.failure = kind
                        break
            if ff_level == "error":
                self.last_error = text
        level = log_level_for(ff_level, text)
        if level is not None and (level != "debug" or _stdlib_log.isEnabledFor(logging.DEBUG)):
            getattr(log, level)("ffmpeg", camera=self.camera, pid=self.pid, line=text)
        if self._on_line is not None:
            self._on_line(level or "debug", text)


_stdlib_log = logging.getLogger("cctv_daemon.ffmpeg")


def parse_line(line: str) -> tuple[str | None, str]:
    """(ffmpeg's level mapped to ours, or None when the line has no [level] tag; the text without the tag)."""
    m = _LEVEL.search(line)
    level = _LEVEL_MAP[m.group(1)] if m else None
    text = (line[: m.start()] + line[m.end() :]).strip() if m else line.strip()
    return level, re.sub(r" @ 0x[0-9a-f]+\]", "]", text)


def name_input(text: str, label: str | None) -> str:
    """``text`` with the stdin playlist's "pipe:0" (and the concat demuxer's quoted URL) named by ``label``, e.g.
    "rtsp://***@cam:554/live: Connection refused" instead of "pipe:0: Connection refused"."""
    if not label:
        return text
    text = _CONCAT_OPEN.sub(lambda _: f"[concat] Impossible to open '{label}'", text)
    return _PIPE_INPUT.sub(lambda _: label, text)


def is_live_output(text: str) -> bool:
    """A line about the live view's output: the hls muxer's own, or the tee's about its second slave."""
    return text.startswith("[hls]") or (text.startswith("[tee]") and ("#1 " in text or "f=hls" in text))


def log_level_for(ff_level: str | None, text: str) -> str | None:
    """The level an ffmpeg stderr line is logged at, or None to drop it (see the module doc)."""
    if _BANNER.match(text):
        return None
    if ff_level is None:
        return "debug" if _REPORT.match(text) else "info"
    if ff_level == "info" or any(h in text for h in _HARMLESS):
        return "debug"
    return ff_level


def describe(args: list[str]) -> str:
    """The command line as it may be logged."""
    return redact(" ".join(args))
