"""One daemon per recording folder: an OS-level exclusive lock on {state_dir}/cctv-daemon.lock held for the
whole run. The OS drops the lock when the process dies, so a crash never leaves a lock that blocks the next
start; the file itself is never deleted (a leftover file without a lock means nothing). The owner's pid and
process start time are written in the file for `status`/`stop`, which confirm them with psutil."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from cctv_daemon.core import constants as c
from cctv_daemon.core import winapi

if not winapi.IS_WINDOWS:
    import fcntl


@dataclass(frozen=True)
class Owner:
    pid: int
    create_time: float  # psutil create_time of the daemon process
    started_at: float  # wall clock when the lock was taken
    save_path: str = ""
    config: str = ""


class AlreadyRunning(Exception):
    def __init__(self, lock_file: Path, owner: Owner | None) -> None:
        self.lock_file = lock_file
        self.owner = owner
        who = f"pid {owner.pid}" if owner else "another process"
        super().__init__(f"already running ({who} holds {lock_file})")


def lock_path(state_dir: Path) -> Path:
    return state_dir / c.LOCK_FILENAME


def _try_lock(fd: int, shared: bool = False) -> bool:
    if winapi.IS_WINDOWS:
        return winapi.lock_nb(fd)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    if winapi.IS_WINDOWS:
        winapi.unlock(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)


def read_owner(path: Path) -> Owner | None:
    """The pid/start time written by the last holder (may be stale: check with is_alive())."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
        return Owner(int(data["pid"]), float(data["create_time"]), float(data["started_at"]),
                     str(data.get("save_path", "")), str(data.get("config", "")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def is_alive(owner: Owner) -> bool | None:
    """True: that process runs and is the one that wrote the file (same start time); False: it does not;
    None: cannot tell (the process is hidden from us, e.g. another user with hidepid)."""
    try:
        return abs(psutil.Process(owner.pid).create_time() - owner.create_time) < 1.0
    except psutil.NoSuchProcess:
        return None if psutil.pid_exists(owner.pid) else False  # exists but hidden from us: cannot tell
    except psutil.AccessDenied:
        return None


def lock_is_held(path: Path) -> bool:
    """Probe: does some process hold the lock? (a non-blocking shared lock, released at once)"""
    try:
        fd = os.open(path, os.O_RDONLY if not winapi.IS_WINDOWS else os.O_RDWR)
    except OSError:
        return False
    try:
        if _try_lock(fd, shared=True):
            _unlock(fd)
            return False
        return True
    finally:
        os.close(fd)


def running_owner(state_dir: Path) -> Owner | None:
    """The running daemon of this state folder, or None."""
    path = lock_path(state_dir)
    owner = read_owner(path)
    if owner is not None:
        alive = is_alive(owner)
        if alive is not None:
            return owner if alive else None
    return owner if lock_is_held(path) else None


class InstanceLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = lock_path(state_dir)
        self._fd: int | None = None

    def acquire(self, save_path: Path | None = None, config: Path | None = None) -> Owner:
        """Take the lock or raise AlreadyRunning; never waits for another daemon."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # never O_TRUNC: the holder's text stays
        deadline = time.monotonic() + c.LOCK_RETRY_S
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                raise AlreadyRunning(self.path, read_owner(self.path))
            time.sleep(0.05)
        me = psutil.Process()
        owner = Owner(me.pid, me.create_time(), time.time(), str(save_path or ""), str(config or ""))
        text = json.dumps({"pid": owner.pid, "create_time": owner.create_time, "started_at": owner.started_at,
                           "save_path": owner.save_path, "config": owner.config}) + "\n"
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
        self._fd = fd
        return owner

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # ours: say nobody runs; the file itself stays
            _unlock(fd)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None
