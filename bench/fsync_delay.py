"""How much of the data fsync's CPU is the write-back itself, and where syncfs(2) puts it (issue 10).

1. fsync a 3.5 MB file (a 10 s 720p segment) right after writing it, and fsync another after 40 s, once the
   kernel's flusher (dirty_expire_centisecs 3000, dirty_writeback_centisecs 500) has written it back.
2. fsync vs syncfs right after writing, interleaved (segments/durable.py flushes with syncfs): the calling thread's
   CPU, and the whole machine's busy CPU time (/proc/stat, all CPUs, kernel threads included) per file, so that the
   write-back moved to the kernel's threads is counted too. The machine figure is only meaningful on a quiet machine.
CPU of the calling thread: time.thread_time.

    python3 bench/fsync_delay.py /path/on/the/recording/filesystem/probe-folder [--skip-delay]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

from cctv_daemon.segments import durable

DATA = os.urandom(3_500_000)


def write(d: str, i: int) -> str:
    p = os.path.join(d, f"f{i}.mp4")
    with open(p, "wb") as f:
        for k in range(0, len(DATA), 65536):
            f.write(DATA[k:k + 65536])
    return p


def timed_flush(p: str, flush: Callable[[int], None] = os.fsync) -> float:
    """CPU of this thread to open `p`, flush it (fsync, or durable._syncfs) and close it."""
    t = time.thread_time()
    fd = os.open(p, os.O_RDONLY)
    flush(fd)
    os.close(fd)
    return time.thread_time() - t


def fs(p: str) -> float:
    return timed_flush(p)


def sfs(p: str) -> float:
    return timed_flush(p, durable._syncfs)


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (user+nice+system+irq+softirq+steal of all CPUs)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")


def delayed(d: str) -> None:
    for rnd in range(2):
        now = [fs(write(d, i)) for i in range(10)]
        later_paths = [write(d, 100 + i) for i in range(10)]
        time.sleep(40)  # the flusher writes pages dirty for 30 s at its next 5 s wake-up
        later = [fs(p) for p in later_paths]
        print(f"round {rnd}: immediate fsync CPU {sum(now) / 10 * 1000:.3f} ms/file, "
              f"after 40 s {sum(later) / 10 * 1000:.3f} ms/file")
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))


def fsync_vs_syncfs(d: str, rounds: int = 6, files: int = 20) -> None:
    own: dict[str, list[float]] = {"fsync": [], "syncfs": []}
    machine: dict[str, list[float]] = {"fsync": [], "syncfs": []}
    for rnd in range(rounds):
        for name, flush in (("fsync", fs), ("syncfs", sfs)) if rnd % 2 == 0 else (("syncfs", sfs), ("fsync", fs)):
            m0, mine = machine_busy(), 0.0
            for i in range(files):
                mine += flush(write(d, i))
                time.sleep(0.05)
            time.sleep(0.5)  # the completions of the last write-back
            machine[name].append((machine_busy() - m0) / files)
            own[name].append(mine / files)
            for n in os.listdir(d):
                os.unlink(os.path.join(d, n))
    for name in ("fsync", "syncfs"):
        o, m = own[name], machine[name]
        print(f"{name:>6}: this thread {1e3 * statistics.median(o):.3f} ms/file ({1e3 * min(o):.3f}-"
              f"{1e3 * max(o):.3f}); whole machine {1e3 * statistics.median(m):.2f} ms/file ({1e3 * min(m):.2f}-"
              f"{1e3 * max(m):.2f}, writing included)")


def main() -> None:
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    if durable._libc_syncfs is not None:
        fsync_vs_syncfs(d)
    if "--skip-delay" not in sys.argv:
        delayed(d)


if __name__ == "__main__":
    main()
