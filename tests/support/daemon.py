"""Runs the real daemon (`python -m cctv_daemon run`) as a subprocess for integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]


def wait_for(pred: Callable[[], T], timeout: float, what: str = "condition", interval: float = 0.1,
             proc: subprocess.Popen[bytes] | None = None) -> T:
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


class DaemonProc:
    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.save_path = tmp / "rec"
        config.setdefault("storageConfig", {}).setdefault("savePath", str(self.save_path))
        self.save_path = Path(config["storageConfig"]["savePath"])
        if not self.save_path.is_absolute():  # like the daemon: relative to the config file's folder
            self.save_path = tmp / self.save_path
        self.config = config
        self.config_path = tmp / "config.json"
        self.write_config(config)
        self.env = {**os.environ, **(env or {})}
        self.out_path = tmp / f"daemon-{int(time.time() * 1000)}.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def state_dir(self) -> Path:
        return self.save_path / ".cctv"

    def start(self) -> DaemonProc:
        self.out_path = self.tmp / f"daemon-{time.time_ns()}.out"
        self._out = self.out_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cctv_daemon", "run", "--config", str(self.config_path)],
            cwd=self.tmp,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        return self

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cctv_daemon", *args, "--config", str(self.config_path)],
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )

    # -- observing ------------------------------------------------------------------------------------
    def output(self) -> str:
        """What this process (the latest start()) printed."""
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def events(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        out = []
        for line in self.output().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if event is not None and ev.get("event") != event:
                continue
            if all(ev.get(k) == v for k, v in match.items()):
                out.append(ev)
        return out

    def segments(self, camera: str) -> list[Path]:
        return sorted((self.save_path / camera).glob("*/*.mp4"))

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

    def stop(self, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._out.close()
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self._out.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self._out.close()
