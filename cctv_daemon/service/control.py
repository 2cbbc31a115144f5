"""The control channel: request files in {state_dir}/control/ that the daemon's loop polls every tick.
Works the same on Linux and Windows (no signals, no TerminateProcess), for any user who may write there.
A request names the pid it is meant for, so a request left over from a dead daemon is ignored."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import structlog

from cctv_daemon.core import constants as c

log = structlog.get_logger("cctv_daemon.control")

REQUESTS = ("stop", "reload")


def control_dir(state_dir: Path) -> Path:
    return state_dir / c.CONTROL_DIRNAME


def send_request(state_dir: Path, request: str, pid: int) -> Path:
    """Ask daemon `pid` to do `request` (written atomically; raises OSError if the folder is not writable)."""
    if request not in REQUESTS:
        raise ValueError(f"unknown request {request!r}")
    folder = control_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / request
    tmp = folder / f".{request}.{os.getpid()}.tmp"
    tmp.write_text(f"{pid}\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


class ControlChannel:
    """Daemon component: acts on request files addressed to this process, deletes every one it reads."""

    name = "control"

    def __init__(self, state_dir: Path, handlers: dict[str, Callable[[], None]],
                 pid: int | None = None) -> None:
        self.folder = control_dir(state_dir)
        self.handlers = handlers
        self.pid = os.getpid() if pid is None else pid
        self.handled: dict[str, int] = {name: 0 for name in handlers}

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in self.handlers:
            self._take(name)  # leftovers of an earlier run must not act on us

    def _take(self, name: str) -> str | None:
        path = self.folder / name
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("control_request_unreadable", request=name, error=str(exc))
            return None
        try:
            path.unlink()
        except OSError as exc:
            log.warning("control_request_not_removed", request=name, error=str(exc))
        return text

    def tick(self) -> None:
        for name, handler in self.handlers.items():
            text = self._take(name)
            if text is None:
                continue
            if text != str(self.pid):
                log.warning("control_request_ignored", request=name, for_pid=text,
                            reason="not for this daemon")
                continue
            log.info("control_request", request=name)
            self.handled[name] += 1
            handler()

    def stop(self) -> None:
        pass
