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


def _own_group() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setpgid(0, 0)


def _own_group_die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setpgid(0, 0)
    _die_with_parent()


def spawn_kwargs() -> dict[str, Any]:
    """Popen keyword arguments so that the child is ours alone to stop: a process group of its own (a Ctrl-C in the
    terminal goes to the foreground group, the daemon's, only), in the daemon's session. Not a session of its own:
    with the kernel's autogroup scheduling each session is a scheduling group, and the same ffmpeg command cost 4-17 %
    more CPU in a session of its own than in its parent's (docs/benchmarks.md, fifth pass: variant runs)."""
    if IS_WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    if sys.platform.startswith("linux"):
        return {"preexec_fn": _own_group_die_with_parent}
    return {"preexec_fn": _own_group}


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
