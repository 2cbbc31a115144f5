"""One running ffmpeg: its pipes read on two small threads, its progress and its errors made into facts.

ffmpeg's exit status means nothing (it exits 0 when the server vanishes), so what went wrong is read from
its stderr: every line is read (credentials redacted) and known failures are classified. What reaches the log
(log_level_for): ffmpeg's warnings and errors at their level; its informational output (stream reports,
"Input #0", "Stream mapping", encoder settings and statistics, "Opening ... for writing") at debug only; its
version banner (version, built with, configuration, lib* versions) never.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
from collections.abc import Callable
from typing import IO, Any

import structlog

from cctv_daemon.core.child_env import ffmpeg_env
from cctv_daemon.core.clock import Clock
from cctv_daemon.core.redact import redact
from cctv_daemon.recording import process_control

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
_READ_CHUNK = 65536
_AUDIO_STREAM = re.compile(r"Stream #0:\d+.*?: Audio: (\w+)")
# Harmless once per start with live RTSP sources (FIELD-NOTES): kept, but not shouted.
_HARMLESS = ("Timestamps are unset in a packet", "Non-monotonous DTS", "Non-monotonic DTS")
# The version banner (-hide_banner hides it, but not in every ffmpeg build or wrapper): never logged.
_BANNER = re.compile(
    r"(ffmpeg|ffprobe) version |built with |configuration: "
    r"|lib(avutil|avcodec|avformat|avdevice|avfilter|swscale|swresample|postproc)\s+\d+\.\s*\d+"
)
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
    ) -> None:
        self.args = args
        self.camera = camera
        self.clock = clock
        self._on_line = on_line
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self.started_at = clock.monotonic()
        self.last_advance = self.started_at  # monotonic time media time last moved forward
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
        self._threads = [
            threading.Thread(target=self._read_progress, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True),
        ]
        for t in self._threads:
            t.start()

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
        for t in self._threads:
            t.join(timeout)

    # -- readers ----------------------------------------------------------------------------------
    def _read_progress(self, stream: IO[bytes]) -> None:
        """ffmpeg writes one `key=value` block per PROGRESS_PERIOD_S, ending `progress=...`, in one write: read it
        in one blocking read of a large chunk and pick the two keys out of the whole block (a Python loop per
        line cost more than the rest of this thread's work)."""
        fd = stream.fileno()
        pending = b""
        while True:
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            end = pending.rfind(b"\n", 0, len(pending))
            last = pending.rfind(b"progress=", 0, end if end >= 0 else 0)
            if last < 0:
                continue  # no complete block yet
            cut = pending.index(b"\n", last) + 1
            self._progress_blocks(pending[:cut])
            pending = pending[cut:]
        if self._on_exit is not None:
            self._on_exit()  # stdout closed: ffmpeg has exited (or is exiting)

    def _progress_blocks(self, text: bytes) -> None:
        """One or more complete blocks: the newest out_time_us and frame count win."""
        times = _OUT_TIME_US.findall(text)
        frames = _FRAME.findall(text)
        self._progress(int(times[-1]) if times else -1, int(frames[-1]) if frames else 0)

    def _progress(self, out_time: int, frames: int) -> None:
        with self._lock:
            # Media flows when media time OR the frame count grows: a camera whose timestamps jump back keeps
            # media time still for a while (or an hour) although frames keep coming; that is not a stall.
            if out_time > self.out_time_us or frames > self.frames:
                self.last_advance = self.clock.monotonic()
            self.out_time_us = max(self.out_time_us, out_time)
            self.frames = max(self.frames, frames)

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = redact(raw.decode("utf-8", "replace").rstrip())
            if line:
                self._stderr_line(line)

    def _stderr_line(self, line: str) -> None:
        ff_level, text = parse_line(line)
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


def close_pipes(proc: subprocess.Popen[Any]) -> None:
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass
