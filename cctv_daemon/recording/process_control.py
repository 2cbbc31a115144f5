"""How child processes are started and stopped on each platform (the only place that branches on the OS
for processes): a polite stop is SIGTERM on POSIX and CTRL_BREAK on Windows, never TerminateProcess first."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Any

IS_WINDOWS = sys.platform == "win32"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If the daemon is killed, the kernel sends ffmpeg SIGTERM, which finalizes its current segment.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn_kwargs() -> dict[str, Any]:
    """Popen keyword arguments so that the child is ours alone to stop (own session / process group)."""
    if IS_WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    kwargs: dict[str, Any] = {"start_new_session": True}
    if sys.platform.startswith("linux"):
        kwargs["preexec_fn"] = _die_with_parent
    return kwargs


def polite_stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    try:
        if IS_WINDOWS:
            os.kill(proc.pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            proc.send_signal(signal.SIGTERM)
    except (ProcessLookupError, OSError):
        pass


def force_kill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.kill()
    except (ProcessLookupError, OSError):
        pass
