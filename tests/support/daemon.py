"""The one way tests run the real daemon and its CLI: `python -m cctv_daemon ...` as subprocesses of this
worktree's code. `DaemonProc` is one daemon (its config file, its output, its files); `run_cli` runs any other
command. Tests get daemons from the `daemon_factory` fixture (tests/conftest.py), which stops every daemon at
teardown and shows its output when the test fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import psutil

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
# Ambient credentials must not reach a daemon under test: what it uploads with comes from its config only.
_STRIPPED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def wait_for(pred: Callable[[], T | Literal[False] | None], timeout: float, what: str = "condition",
             interval: float = 0.1, proc: subprocess.Popen[bytes] | None = None) -> T:
    """Poll ``pred`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds, or at once
    when ``proc`` (the daemon under test) has exited first."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) before: {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def pattern_camera(name: str, duration: int = 1, **extra: Any) -> dict[str, Any]:
    return {"cameraName": name, "source": "test", "videoDuration": duration, **extra}


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a daemon or CLI under test: ours, running this worktree's code, no AWS credentials."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
    env["PYTHONPATH"] = str(REPO)  # the worktree's code, not whatever the venv has installed
    env.update(extra or {})
    return env


def run_cli(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`cctv-daemon ARGS...` to completion; stdout and stderr captured apart (data vs logs)."""
    return subprocess.run([sys.executable, "-m", "cctv_daemon", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=child_env(env), check=False)


def ffmpegs_of(state_dir: Path) -> list[psutil.Process]:
    """The ffmpeg processes recording for the daemon whose state folder is ``state_dir`` (named in their argv)."""
    marker = str(state_dir.resolve())
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if "ffmpeg" in (p.info["name"] or "") and any(marker in a for a in p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


class DaemonProc:
    """One daemon: writes ``config`` to ``tmp/config.json`` (savePath defaults to ``tmp/rec``); each start()
    is a new process whose stdout+stderr go to a new file under ``tmp``."""

    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        config.setdefault("storageConfig", {}).setdefault("savePath", str(tmp / "rec"))
        config.setdefault("api", {"port": 0})  # many daemons at once: each API on an ephemeral port (api.json)
        self.save_path = Path(config["storageConfig"]["savePath"])
        if not self.save_path.is_absolute():  # like the daemon: relative to the config file's folder
            self.save_path = tmp / self.save_path
        self.config = config
        self.config_path = tmp / "config.json"
        self.write_config(config)
        self.env = dict(env or {})
        self.out_path = tmp / f"daemon-{time.time_ns()}.out"
        self.out_paths: list[Path] = []  # one per start(), oldest first
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._parsed_path: Path | None = None  # events(): the output parsed so far (path, bytes, events)
        self._parsed_offset = 0
        self._parsed: list[dict[str, Any]] = []

    def write_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(json.dumps(config, indent=2))
        self.config_path.chmod(0o600)  # configs hold secrets (the daemon warns about readable ones)

    @property
    def state_dir(self) -> Path:
        return self.save_path / ".cctv"

    def start(self) -> DaemonProc:
        self._close_out()
        self.out_path = self.tmp / f"daemon-{time.time_ns()}.out"
        self.out_paths.append(self.out_path)
        self._out = self.out_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cctv_daemon", "run", "--config", str(self.config_path)],
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=child_env(self.env),
        )
        return self

    def cli(self, *args: str, env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`cctv-daemon ARGS... --config <this daemon's config>`: another process, so without the daemon's own
        ``env`` (a fault injected into the daemon stays in the daemon)."""
        return run_cli(*args, "--config", str(self.config_path), cwd=self.tmp, env=env, timeout=timeout)

    # -- observing ------------------------------------------------------------------------------------
    def output(self) -> str:
        """What this process (the latest start()) printed."""
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def events(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """The JSON log lines of the latest start(), those named ``event`` with fields equal to ``match``."""
        return [dict(ev) for ev in self._parsed_events()
                if (event is None or ev.get("event") == event) and all(ev.get(k) == v for k, v in match.items())]

    def _parsed_events(self) -> list[dict[str, Any]]:
        """Every JSON object line of the latest start(), parsed once: each call reads only the bytes written since
        the last one (tests poll this 10 times a second while the output grows for minutes), and a line is taken
        only once its newline is written."""
        path = self.out_path
        if self._parsed_path != path:
            self._parsed_path, self._parsed_offset, self._parsed = path, 0, []
        try:
            with path.open("rb") as f:
                f.seek(self._parsed_offset)
                data = f.read()
        except FileNotFoundError:
            return self._parsed
        end = data.rfind(b"\n") + 1
        self._parsed_offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                self._parsed.append(ev)
        return self._parsed

    def segments(self, camera: str) -> list[Path]:
        return sorted((self.save_path / camera).glob("*/*.mp4"))

    def ffmpegs(self) -> list[psutil.Process]:
        return ffmpegs_of(self.state_dir)

    def wait_segments(self, camera: str, count: int, timeout: float) -> list[Path]:
        return wait_for(
            lambda: (s := self.segments(camera)) and len(s) >= count and s,
            timeout,
            f"{count} segments of {camera}",
        )

    def wait_event(self, event: str, timeout: float, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        return wait_for(
            lambda: (e := self.events(event, **match)) and len(e) >= count and e,
            timeout,
            f"{count}x log event {event} {match}",
        )

    # -- ending -----------------------------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Its exit code (negative: the signal that ended it); TimeoutExpired if still running."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._close_out()
        return code

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM (unless it already exited) and its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL of the daemon alone, like a crash: its ffmpegs (own sessions) are told by the kernel that
        their parent died and finalize, as after a real crash."""
        assert self.proc is not None
        self.proc.kill()
        self.wait(10)

    def close(self) -> None:
        """Teardown: stop politely, SIGKILL after 15 s; then make sure no ffmpeg of it outlives the test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            self._reap_ffmpegs()
        self._close_out()

    def _reap_ffmpegs(self) -> None:
        left = self.ffmpegs()
        if not left:
            return
        _, alive = psutil.wait_procs(left, timeout=10)  # they finalize on the parent-death SIGTERM
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)

    def _close_out(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def log_tail(self, lines: int = 200) -> str:
        """Every start's output (the last ``lines`` lines of each), for the report of a failed test."""
        parts = []
        for path in self.out_paths:
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            cut = f" (last {lines} of {len(text)} lines)" if len(text) > lines else ""
            code = ""
            if path == self.out_path and self.proc is not None:
                rc = self.proc.poll()
                code = ", still running" if rc is None else f", exit {rc}"
            parts.append(f"== {path}{cut}{code} ==")
            parts.extend(text[-lines:])
        return "\n".join(parts)
