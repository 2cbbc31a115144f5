"""How much of the data fsync's CPU is the write-back itself: fsync a 3.5 MB file (a 10 s 720p segment) right
after writing it, and fsync another after 40 s, once the kernel's flusher (dirty_expire_centisecs 3000,
dirty_writeback_centisecs 500) has written it back. CPU of the calling thread (time.thread_time).

    python3 bench/fsync_delay.py /path/on/the/recording/filesystem/probe-folder
"""

from __future__ import annotations

import os
import sys
import time

DATA = os.urandom(3_500_000)


def write(d: str, i: int) -> str:
    p = os.path.join(d, f"f{i}.mp4")
    with open(p, "wb") as f:
        for k in range(0, len(DATA), 65536):
            f.write(DATA[k:k + 65536])
    return p


def fs(p: str) -> float:
    t = time.thread_time()
    fd = os.open(p, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.thread_time() - t


def main() -> None:
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    for rnd in range(2):
        now = [fs(write(d, i)) for i in range(10)]
        later_paths = [write(d, 100 + i) for i in range(10)]
        time.sleep(40)  # the flusher writes pages dirty for 30 s at its next 5 s wake-up
        later = [fs(p) for p in later_paths]
        print(f"round {rnd}: immediate fsync CPU {sum(now) / 10 * 1000:.3f} ms/file, "
              f"after 40 s {sum(later) / 10 * 1000:.3f} ms/file")
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))


if __name__ == "__main__":
    main()
