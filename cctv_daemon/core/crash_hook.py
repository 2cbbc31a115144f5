"""Test hook: `CCTV_DAEMON_CRASH_AT=<point>` makes the process SIGKILL itself at that named point, so tests
can crash the daemon exactly between two steps of docs/segment-lifecycle.md. Never set in production."""

from __future__ import annotations

import os
import signal

ENV_VAR = "CCTV_DAEMON_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV_VAR) == name:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
