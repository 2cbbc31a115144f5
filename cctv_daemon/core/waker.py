"""Wakes the main loop early: a socket pair the loop waits on with a timeout, written to by other threads (an
ffmpeg exited) and, through signal.set_wakeup_fd, by the C-level signal handler (so a stop signal is acted on at
once although the loop sleeps up to a second when every camera records steadily)."""

from __future__ import annotations

import select
import signal
import socket


class Waker:
    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def wake(self) -> None:
        """Thread-safe; never blocks (a full buffer already means 'wake up')."""
        try:
            self._w.send(b"\0")
        except OSError:
            pass

    def wake_on_signals(self) -> None:
        """Main thread only: every signal delivered to the process also wakes the loop."""
        try:
            signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError):
            pass  # not the main thread: the loop then sees signals at its next timeout

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` seconds passed; True when woken."""
        try:
            ready, _, _ = select.select([self._r], [], [], max(0.0, timeout))
        except InterruptedError:  # pragma: no cover - PEP 475 retries select; kept for safety
            return True
        if not ready:
            return False
        try:
            while self._r.recv(4096):
                pass
        except OSError:
            pass
        return True

    def close(self) -> None:
        try:
            old = signal.set_wakeup_fd(-1)
            if old != self._w.fileno():
                signal.set_wakeup_fd(old)  # not ours: leave it as it was
        except (ValueError, OSError):
            pass
        self._r.close()
        self._w.close()
