"""The progress reader of FfmpegProcess, fed by a real child process that writes ffmpeg's `-progress` blocks
(split across writes, several in one write, then exit), as ffmpeg does on its stdout."""

from __future__ import annotations

import sys
import threading

from cctv_daemon.core.clock import SystemClock
from cctv_daemon.recording.ffmpeg_process import FfmpegProcess

BLOCK = (
    "frame={f}\nfps=25.00\nstream_0_0_q=-1.0\nbitrate=N/A\ntotal_size=1234\nout_time_us={t}\nout_time_ms={t}\n"
    "out_time=00:00:01.000000\ndup_frames=0\ndrop_frames=0\nspeed=1.00x\nprogress=continue\n"
)

WRITER = f"""
import os, sys, time
block = {BLOCK!r}
out = sys.stdout.buffer
def put(data):
    out.write(data.encode()); out.flush(); time.sleep(0.05)
put(block.format(f="N/A", t="N/A"))
half = block.format(f=25, t=1000000)
put(half[:40]); put(half[40:])
put(block.format(f=50, t=2000000) + block.format(f=75, t=3000000))
put(block.format(f=100, t=4000000)[:-10])  # a block cut short by the exit: not counted
"""


def test_progress_blocks_in_any_chunking_and_exit_wakes() -> None:
    exited = threading.Event()
    proc = FfmpegProcess([sys.executable, "-c", WRITER], "cam", SystemClock(), on_exit=exited.set)
    assert exited.wait(20), "on_exit not called when the child closed its stdout"
    proc.join_readers(5)
    assert proc.poll() is not None or proc.proc.wait(5) == 0
    _, out_time_us, failure = proc.snapshot()
    assert out_time_us == 3_000_000  # the newest complete block wins, the incomplete one is ignored
    assert proc.frames == 75
    assert failure is None
    assert proc.has_advanced
