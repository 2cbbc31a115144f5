"""Stopping the test servers' processes (database, moto, RTSP): one way for all of them."""

from __future__ import annotations

import signal
import subprocess


def stop(proc: subprocess.Popen[bytes], timeout: float, sig: int = signal.SIGTERM) -> int | None:
    """Ask politely (``sig``), SIGKILL after ``timeout``; the exit status (at once if it had already exited)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


def kill(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGKILL and wait (a crash of the server); the exit status."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=timeout)
    return proc.returncode
