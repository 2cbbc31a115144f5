"""The main loop's Waker: woken by another thread and by a signal (set_wakeup_fd), else sleeps its timeout."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from cctv_daemon.core.waker import Waker


def test_wait_times_out_when_nobody_wakes() -> None:
    w = Waker()
    t0 = time.monotonic()
    assert w.wait(0.2) is False
    assert time.monotonic() - t0 >= 0.19
    w.close()


def test_another_thread_wakes_it_at_once_and_wakes_are_drained() -> None:
    w = Waker()
    threading.Timer(0.1, w.wake).start()
    t0 = time.monotonic()
    assert w.wait(10) is True
    assert time.monotonic() - t0 < 5
    w.wake()
    w.wake()
    assert w.wait(0) is True
    assert w.wait(0.05) is False  # both wakes consumed by one wait
    w.close()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signal")
def test_a_signal_wakes_it() -> None:
    seen: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda s, _f: seen.append(s))
    w = Waker()
    try:
        w.wake_on_signals()
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        t0 = time.monotonic()
        assert w.wait(10) is True
        assert time.monotonic() - t0 < 5
    finally:
        w.close()
        signal.signal(signal.SIGUSR1, old)
    assert seen == [signal.SIGUSR1]
    assert signal.set_wakeup_fd(-1) == -1  # close() gave the wakeup fd back
