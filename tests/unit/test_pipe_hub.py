"""The pipe hub (one thread reading every ffmpeg's pipes), with real child processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.recording.ffmpeg_process import FfmpegProcess
from cctv_daemon.recording.pipe_hub import PipeHub, window_for
from tests.support.daemon import wait_for

CHUNKS = 10
WRITER = f"""
import sys, time
for i in range({CHUNKS}):
    sys.stdout.write(f"{{sys.argv[1]}}:{{i}};"); sys.stdout.flush(); time.sleep(0.03)
"""


def test_one_thread_reads_many_children_in_order_with_few_wakeups() -> None:
    hub = PipeHub(coalesce_s=0.1)
    kids = [subprocess.Popen([sys.executable, "-c", WRITER, str(k)], stdout=subprocess.PIPE) for k in range(4)]
    got: dict[int, list[bytes]] = {k: [] for k in range(4)}
    ended = {k: threading.Event() for k in range(4)}
    threads_before = threading.active_count()

    def on_data(k: int, chunk: bytes) -> None:
        assert not ended[k].is_set(), "data after the end of file"
        if chunk:
            got[k].append(chunk)
        else:
            ended[k].set()

    for k, p in enumerate(kids):
        assert p.stdout is not None
        hub.add(p.stdout, lambda chunk, k=k: on_data(k, chunk))
    assert threading.active_count() <= threads_before + 1  # one thread for all of them
    for k, p in enumerate(kids):
        assert ended[k].wait(20), f"child {k}: end of file not delivered"
        p.wait(10)
        assert p.stdout is not None and p.stdout.closed  # the hub closed it
        assert b"".join(got[k]).decode() == "".join(f"{k}:{i};" for i in range(CHUNKS))
    # 40 writes 30 ms apart over ~0.3 s, read by a hub that sleeps 0.1 s after each wake-up: a few wake-ups.
    assert hub.wakeups < 4 * CHUNKS / 2, hub.wakeups


def test_discarded_stream_is_closed_by_the_hub_and_not_delivered_again() -> None:
    hub = PipeHub(coalesce_s=0.0)
    p = subprocess.Popen([sys.executable, "-c", "import os, time; os.write(1, b'x\\n'); time.sleep(30)"],
                         stdout=subprocess.PIPE)
    first = threading.Event()
    calls: list[bytes] = []

    def on_data(chunk: bytes) -> None:
        calls.append(chunk)
        first.set()

    try:
        assert p.stdout is not None
        hub.add(p.stdout, on_data)
        assert first.wait(20)
        hub.discard(p.stdout)
        deadline = threading.Event()
        for _ in range(200):
            if p.stdout.closed:
                break
            deadline.wait(0.05)
        assert p.stdout.closed
        assert b"".join(calls) == b"x\n" and b"" not in calls  # no end of file delivered for a discarded stream
    finally:
        p.kill()
        p.wait()


def test_an_urgent_stream_is_read_at_once_while_the_others_wait() -> None:
    """stderr (urgent) is read as soon as it is written, even in the hub's coalescing wait; stdout waits for it."""
    hub = PipeHub(coalesce_s=5.0)
    code = ("import os, sys; os.write(1, b'a'); sys.stdin.read(1); os.write(1, b'b'); os.write(2, b'e');"
            "sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    got: list[tuple[str, bytes, float]] = []
    out, err = threading.Event(), threading.Event()
    try:
        assert p.stdout is not None and p.stderr is not None and p.stdin is not None
        hub.add(p.stdout, lambda chunk: (got.append(("out", chunk, time.monotonic())), out.set()))
        hub.add(p.stderr, lambda chunk: (got.append(("err", chunk, time.monotonic())), err.set()), urgent=True)
        assert out.wait(20)
        p.stdin.write(b"go")
        p.stdin.flush()
        assert err.wait(20)
        # "a" was read, then the hub waits 5 s before it reads stdout again: "b" (written before "e") is not read
        assert [(k, d) for k, d, _ in got] == [("out", b"a"), ("err", b"e")], got
        assert got[1][2] - got[0][2] < 4.0
    finally:
        p.kill()
        p.wait()


def test_an_exit_is_seen_at_once_although_stdout_is_coalesced() -> None:
    """stderr's end (urgent) ends the coalescing wait, so stdout's end, and so ffmpeg's exit, is not held back."""
    hub = PipeHub(coalesce_s=5.0)
    code = "import os, sys; os.write(1, b'a'); sys.stdin.read(1)"
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    first, out_end, err_end = threading.Event(), threading.Event(), threading.Event()
    try:
        assert p.stdout is not None and p.stderr is not None and p.stdin is not None
        hub.add(p.stdout, lambda chunk: (out_end if chunk == b"" else first).set())
        hub.add(p.stderr, lambda chunk: err_end.set() if chunk == b"" else None, urgent=True)
        assert first.wait(20)  # "a" read: the hub now waits 5 s before it reads stdout again
        p.stdin.write(b"x")
        p.stdin.flush()  # the child exits
        t0 = time.monotonic()
        assert out_end.wait(20) and err_end.is_set()
        assert time.monotonic() - t0 < 4.0
    finally:
        p.kill()
        p.wait()


def test_a_progress_block_is_dated_back_once_reports_are_coalesced() -> None:
    """Over the run's first ANCHOR_WINDOW_US of media, progress is read at once (the anchor's measurement) and dated
    when read. After that a block may have waited PIPE_COALESCE_S in the pipe: its advance is dated that much
    earlier, so a stall is detected at the latest stallTimeout after the last block, never later. The run's
    anchor uses the read time (reported_at)."""
    clock = FakeClock()
    hub = PipeHub(coalesce_s=0.5)
    proc = FfmpegProcess([sys.executable, "-c", "import time; time.sleep(30)"], "cam", clock, hub=hub)
    try:
        clock.advance(10.0)
        proc._on_stdout(b"frame=25\nout_time_us=1000000\nprogress=continue\n")
        last_advance, out_time_us, _ = proc.snapshot()
        assert out_time_us == 1_000_000 and last_advance == clock.monotonic() == proc.reported_at
        clock.advance(10.0)
        proc._on_stdout(b"frame=275\nout_time_us=11000000\nprogress=continue\n")  # past the anchor's window
        clock.advance(1.0)
        proc._on_stdout(b"frame=300\nout_time_us=12000000\nprogress=continue\n")
        last_advance, out_time_us, _ = proc.snapshot()
        assert out_time_us == 12_000_000
        assert last_advance == clock.monotonic() - 0.5
        assert proc.reported_at == clock.monotonic()  # the anchor's bound: when the report was read, not earlier
    finally:
        proc.kill()
        proc.proc.wait(10)


@pytest.mark.skipif(sys.platform != "linux", reason="epoll's end-only watch (elsewhere a demoted stream stays urgent)")
def test_a_demoted_stream_waits_with_the_others_but_its_end_is_seen_at_once() -> None:
    """Past a run's first seconds stderr is demoted: its lines (the live view's two a second) no longer wake the
    hub one by one, they are read with the progress reports; but its end (ffmpeg's exit) still ends the wait."""
    hub = PipeHub(coalesce_s=10.0)
    code = ("import os, sys; os.write(2, b'a'); sys.stdin.read(1); os.write(2, b'b'); sys.stdin.read(1);"
            "os.write(2, b'c')")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    got: list[bytes] = []
    first, end = threading.Event(), threading.Event()
    try:
        assert p.stderr is not None and p.stdin is not None
        hub.add(p.stderr, lambda chunk: (got.append(chunk), (end if chunk == b"" else first).set()), urgent=True)
        assert first.wait(20)  # read at once while urgent
        hub.demote(p.stderr)
        wakeups = hub.wakeups
        p.stdin.write(b"x")
        p.stdin.flush()  # "b" is written: the hub is in its 10 s wait and does not read it
        time.sleep(1.0)
        assert got == [b"a"] and hub.wakeups == wakeups, got
        t0 = time.monotonic()
        p.stdin.write(b"y")
        p.stdin.flush()  # "c", then the child exits: its end ends the wait, everything is read, in order
        assert end.wait(20)
        assert time.monotonic() - t0 < 4.0
        assert b"".join(got) == b"abc" and got[-1] == b""
        assert p.stderr.closed
    finally:
        p.kill()
        p.wait()


def test_the_live_views_chatter_is_dropped_before_decoding_and_its_errors_are_kept() -> None:
    """The hls muxer's "Opening ... for writing" (info, twice a second per camera with the live view) never reaches
    the line handler; its warnings and errors do (logged as live_view_output, not the recording's failure)."""
    clock = FakeClock()
    hub = PipeHub(coalesce_s=0.5)
    lines: list[tuple[str, str]] = []
    proc = FfmpegProcess([sys.executable, "-c", "import time; time.sleep(30)"], "cam", clock, hub=hub,
                         on_line=lambda level, text: lines.append((level, text)))
    try:
        handled: list[str] = []
        real = proc._stderr_line
        proc._stderr_line = lambda line: (handled.append(line), real(line))  # type: ignore[method-assign]
        proc._on_stderr(b"[hls @ 0x55c9c8d005c0] [info] Opening '/dev/shm/x/live12.m4s.tmp' for writing\n"
                        b"[hls @ 0x55c9c8d005c0] [info] Opening '/dev/shm/x/live.m3u8.tmp' for writing\n"
                        b"[segment @ 0x55c9c8b0] [info] Opening '/rec/r_000003.mp4' for writing\n"
                        b"[hls @ 0x55c9c8d005c0] [warning] Duplicated segment filename detected: x\n"
                        b"[hls @ 0x55c9c8d005c0] [error] failed to rename file a.tmp to a: No space left on device\n")
        assert [h.split("] ", 1)[0] for h in handled] == ["[segment @ 0x55c9c8b0", "[hls @ 0x55c9c8d005c0",
                                                           "[hls @ 0x55c9c8d005c0"]
        assert lines == [("debug", "[segment]  Opening '/rec/r_000003.mp4' for writing")]
        assert proc.failure is None and proc.last_error is None
    finally:
        proc.kill()
        proc.proc.wait(10)


def test_the_window_follows_the_smallest_stall_timeout_within_its_bounds() -> None:
    """window_for: stallTimeout/8 (a stall detected at most that much early), never under PIPE_COALESCE_S (the
    window every config had before) nor over PIPE_WINDOW_MAX_S."""
    assert [window_for(t) for t in (2, 4, 8, 10, 60, 3600)] == [0.5, 0.5, 1.0, 1.0, 1.0, 1.0]
    for t in (2, 3, 4, 5, 8, 10, 30):
        assert window_for(t) <= max(c.PIPE_COALESCE_S, t / 8)


def test_an_advance_read_at_the_windows_end_is_dated_back_to_when_it_was_written() -> None:
    """At the default stallTimeout (10 s) the hub waits 1 s, not 0.5 s. A block written at t0 is read by t0 + 1 s
    at the latest: dated back by the window, its advance is t0 exactly at that boundary, so the camera's rule
    (now - last_advance > stallTimeout) flags the stall exactly stallTimeout after t0, never later; read at once,
    at most the window (stallTimeout/8) sooner."""
    stall_timeout = 10.0
    clock = FakeClock()
    hub = PipeHub()
    proc = FfmpegProcess([sys.executable, "-c", "import time; time.sleep(30)"], "cam", clock, hub=hub,
                         stall_timeout_s=stall_timeout)
    try:
        wait_for(lambda: hub.coalesce_s == 1.0, 20, "the hub's window to follow the streams'")
        clock.advance(10.0)
        proc._on_stdout(b"frame=250\nout_time_us=11000000\nprogress=continue\n")  # past the anchor's window
        t0 = clock.monotonic()  # the next block is written now...
        clock.advance(hub.coalesce_s)  # ...and read at the latest the hub's wait allows
        proc._on_stdout(b"frame=275\nout_time_us=12000000\nprogress=continue\n")
        last_advance, _, _ = proc.snapshot()
        assert last_advance == t0
        assert not (t0 + stall_timeout) - last_advance > stall_timeout  # not flagged before stallTimeout...
        assert (t0 + stall_timeout + 0.01) - last_advance > stall_timeout  # ...flagged right after: never late
        t1 = clock.monotonic()
        proc._on_stdout(b"frame=300\nout_time_us=13000000\nprogress=continue\n")  # read the moment it is written
        last_advance, _, _ = proc.snapshot()
        assert t1 - last_advance == hub.coalesce_s <= stall_timeout / 8  # at most stallTimeout/8 early
    finally:
        proc.kill()
        proc.proc.wait(10)


def test_the_hub_waits_its_streams_smallest_window() -> None:
    """A stream added with window 1.0: the hub waits 1 s between reads (half the wake-ups of 0.5 s); a stream added
    without one (default 0.5) shortens it while it is read; its end lengthens it again. (The ticker runs 60 s and is
    killed: its own end would take its 1 s window away, so it must outlive the test.)"""
    hub = PipeHub(coalesce_s=0.5)
    ticker = "import sys, time\nfor _ in range(1200): sys.stdout.write('.'); sys.stdout.flush(); time.sleep(0.05)"
    slow = subprocess.Popen([sys.executable, "-c", ticker], stdout=subprocess.PIPE)
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(1)"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        assert slow.stdout is not None and other.stdout is not None and other.stdin is not None
        hub.add(slow.stdout, lambda chunk: None, window=1.0)
        wait_for(lambda: hub.coalesce_s == 1.0, 20, "a 1 s window")
        w0, t0 = hub.wakeups, time.monotonic()
        time.sleep(2.0)
        woke, spent = hub.wakeups - w0, time.monotonic() - t0
        assert woke <= spent / 1.0 + 1, (woke, spent)  # a tick every 0.05 s, read once a second
        hub.add(other.stdout, lambda chunk: None)
        wait_for(lambda: hub.coalesce_s == 0.5, 20, "the default window while the other stream is read")
        other.stdin.write(b"x")
        other.stdin.flush()  # it exits: its end is read and forgotten
        wait_for(lambda: hub.coalesce_s == 1.0, 20, "the 1 s window again")
    finally:
        for p in (slow, other):
            p.kill()
            p.wait()
