"""Drive ``rtsp_server.py`` (a real GStreamer RTSP server) from tests; stdlib only.

The server runs under Debian's ``/usr/bin/python3`` (which has ``gi``); we keep the real PID from ``Popen`` so
that ``pause()`` (SIGSTOP = silent stall), ``kill()`` (SIGKILL = camera gone) and ``start()`` again on the
same port (camera back) act on the server itself.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn
from urllib.parse import quote

from tests.support import procs

SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"

#: kind of a mount: "video" (H.264 only), "video+pcmu" (H.264 + G.711 mu-law audio), "h265" (an H.265 file),
#: "video-udp" (H.264, refuses RTSP over TCP with 461)
MountSpec = tuple[str, str | os.PathLike[str]]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PortTaken(Exception):
    """The server could not listen on its port (another process has it)."""


class RtspServer:
    """A GStreamer RTSP server subprocess on 127.0.0.1.

    ``mounts`` maps a mount path to ``(kind, h264_file)``, e.g. ``{"/cam1": ("video", "/tmp/a.h264")}``.
    ``auth``: "basic" (default) or "digest" when ``user``/``password`` are given.
    """

    def __init__(
        self,
        mounts: Mapping[str, MountSpec],
        *,
        user: str | None = None,
        password: str | None = None,
        auth: str = "basic",
        port: int | None = None,
        host: str = "127.0.0.1",
        ready_timeout: float = 15.0,
        python: str = SYSTEM_PYTHON,
        script: str | os.PathLike[str] = SCRIPT,
        keyframe_log: str | os.PathLike[str] | None = None,
        clocks: Mapping[str, float] | None = None,
        jumps: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        """``keyframe_log``: the server appends ``<mount> <wall epoch> <pts>`` per keyframe sent (see
        ``keyframes()``); ``clocks``: mount -> media clock rate (1.01 = 1 % fast); ``jumps``: mount ->
        (after media seconds, by seconds): the mount's timestamps jump once."""
        self.keyframe_log = Path(keyframe_log) if keyframe_log is not None else None
        self.clocks = dict(clocks or {})
        self.jumps = dict(jumps or {})
        if (user is None) != (password is None):
            raise ValueError("user and password go together")
        self.mounts = dict(mounts)
        self.user = user
        self.password = password
        self.auth = auth
        self.host = host
        self.port = port if port is not None else free_port(host)
        # No port asked for: if another process took the port free_port() saw free (parallel test processes,
        # pytest -n), the first start tries another one; restarts ("camera back") keep the port.
        self._may_move = port is None
        self.ready_timeout = ready_timeout
        self.python = python
        self.script = Path(script)
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._stderr: IO[bytes] | None = None
        self._paused = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [self.python, str(self.script), "--port", str(self.port)]
        for path, (kind, file) in self.mounts.items():
            cmd += ["--mount", f"{path}={kind}:{os.fspath(file)}"]
        if self.user is not None and self.password is not None:
            cmd += ["--user", self.user, "--password", self.password]
            if self.auth != "basic":
                cmd += ["--auth", self.auth]
        if self.keyframe_log is not None:
            cmd += ["--keyframe-log", str(self.keyframe_log)]
        for path, rate in self.clocks.items():
            cmd += ["--clock", f"{path}={rate}"]
        for path, (after, by) in self.jumps.items():
            cmd += ["--jump", f"{path}={after}:{by}"]
        return cmd

    def keyframes(self, mount: str) -> list[float]:
        """Wall-clock times (epoch) at which the server sent each keyframe of ``mount`` (needs keyframe_log)."""
        if self.keyframe_log is None or not self.keyframe_log.exists():
            return []
        out = []
        for line in self.keyframe_log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == mount:
                out.append(float(parts[1]))
        return out

    def start(self) -> RtspServer:
        """Start the server (again, on the same port) and wait until it prints ``READY``."""
        for _ in range(4 if self._may_move else 0):
            try:
                return self._start()
            except PortTaken:
                self.port = free_port(self.host)
        return self._start()

    def _start(self) -> RtspServer:
        if self.running:
            raise RuntimeError(f"RTSP server already running (pid {self.pid})")
        self._close_stderr()
        self._stderr = tempfile.TemporaryFile(prefix="rtsp-server-stderr-")  # noqa: SIM115 (closed in close())
        started = time.monotonic()
        deadline = started + self.ready_timeout
        self._paused = False
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        assert self.proc.stdout is not None
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(timeout=remaining):
                    self._fail(f"no READY within {self.ready_timeout:.0f} s")
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    if self._may_move and self.proc.wait(5) == 2 and "cannot listen" in self.stderr_text():
                        self._reap()
                        raise PortTaken(self.port)
                    self._fail("exited before READY")
                line += chunk
        if not line.startswith(b"READY "):
            self._fail(f"unexpected first line {line!r}")
        self.startup_seconds = time.monotonic() - started
        self._may_move = False
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (SIGKILL after ``timeout``); returns the exit status, None if it was not running."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None and self._paused:
            self.resume()
        procs.stop(proc, timeout)
        return self._reap()

    def kill(self) -> int | None:
        """SIGKILL and wait: the camera is gone (connections reset)."""
        if self.proc is None:
            return None
        procs.kill(self.proc, 10)
        return self._reap()

    def pause(self) -> None:
        """SIGSTOP: a silent stall (TCP connections stay open, no data flows)."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        self._signal(signal.SIGCONT)
        self._paused = False

    # -- info ------------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    def url(self, mount: str, user: str | None = None, password: str | None = None) -> str:
        """``rtsp://[user:password@]host:port/mount``; no credentials unless ``user`` is given."""
        if not mount.startswith("/"):
            mount = "/" + mount
        cred = ""
        if user is not None:
            cred = quote(user, safe="")
            if password is not None:
                cred += ":" + quote(password, safe="")
            cred += "@"
        return f"rtsp://{cred}{self.host}:{self.port}{mount}"

    def auth_url(self, mount: str) -> str:
        """URL carrying the server's own (valid) credentials."""
        return self.url(mount, self.user, self.password)

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    # -- helpers ---------------------------------------------------------------------------------------------
    def _signal(self, sig: signal.Signals) -> None:
        if not self.running:
            raise RuntimeError("RTSP server is not running")
        assert self.proc is not None
        self.proc.send_signal(sig)

    def _reap(self) -> int | None:
        proc = self.proc
        assert proc is not None
        if proc.stdout is not None:
            proc.stdout.close()
        self._paused = False
        return proc.returncode

    def _fail(self, why: str) -> NoReturn:
        self.kill()
        raise RuntimeError(f"RTSP server {why}: {' '.join(self.command())}\nstderr:\n{self.stderr_text()}")

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        """Stop (kill if needed) and release the stderr log."""
        try:
            self.stop()
        finally:
            if self.running:
                self.kill()
            self._close_stderr()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
