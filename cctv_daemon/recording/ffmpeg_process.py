"""One running ffmpeg: its pipes read on two small threads, its progress and its errors made into facts.

ffmpeg's exit status means nothing (it exits 0 when the server vanishes), so what went wrong is read from
its stderr: every line goes to the log (levels mapped, credentials redacted), and known failures are classified.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from typing import IO, Any

import structlog

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
_AUDIO_STREAM = re.compile(r"Stream #0:\d+.*?: Audio: (\w+)")
# Harmless once per start with live RTSP sources (FIELD-NOTES): kept, but not shouted.
_HARMLESS = ("Timestamps are unset in a packet", "Non-monotonous DTS", "Non-monotonic DTS")

# Failure kinds, most specific first.
AUTH_FAILED = "auth_failed"
NOT_FOUND = "not_found"
DISK_FULL = "disk_full"
UNWRITABLE = "unwritable"
REFUSED = "connection_refused"
AUDIO_UNSUPPORTED = "audio_unsupported"
NO_DEVICE = "no_device"
_CLASSIFY: tuple[tuple[str, str], ...] = (
    ("401 Unauthorized", AUTH_FAILED),
    ("403 Forbidden", AUTH_FAILED),
    ("404 Not Found", NOT_FOUND),
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
    ) -> None:
        self.args = args
        self.camera = camera
        self.clock = clock
        self._on_line = on_line
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
        block: dict[str, str] = {}
        for raw in stream:
            line = raw.decode("utf-8", "replace").strip()
            key, sep, value = line.partition("=")
            if not sep:
                continue
            block[key] = value
            if key == "progress":
                self._progress_block(block)
                block = {}

    def _progress_block(self, block: dict[str, str]) -> None:
        try:
            out_time = int(block.get("out_time_us", "-1"))
        except ValueError:
            out_time = -1
        try:
            frames = int(block.get("frame", "0"))
        except ValueError:
            frames = 0
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
        m = _LEVEL.search(line)
        level = _LEVEL_MAP[m.group(1)] if m else "info"
        text = (line[: m.start()] + line[m.end() :]).strip() if m else line
        text = re.sub(r" @ 0x[0-9a-f]+\]", "]", text)
        if any(h in text for h in _HARMLESS):
            level = "debug"
        audio = _AUDIO_STREAM.search(text)
        with self._lock:
            if audio and self.audio_codec is None:
                self.audio_codec = audio.group(1)
            if level == "error" or m is None:
                for needle, kind in _CLASSIFY:
                    if needle in text:
                        if self.failure is None or kind == AUDIO_UNSUPPORTED:
                            self.failure = kind
                        break
            if level == "error":
                self.last_error = text
        getattr(log, level)("ffmpeg", camera=self.camera, pid=self.pid, line=text)
        if self._on_line is not None:
            self._on_line(level, text)


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
