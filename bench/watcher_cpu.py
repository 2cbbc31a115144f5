"""CPU of the segment watcher's threads (watchdog's and our handler) per list rename, in one process: N lists
renamed into place the way ffmpeg's segment muxer does it ({run}.csv.tmp written, then renamed over {run}.csv),
one rename every --gap seconds, each seen by the watcher. CPU = the process's CPU minus this (writing) thread's,
so load on the machine does not count. `--ab` alternates the watcher's rename-only fast path with watchdog's plain
emitter (SegmentWatcher.fast_path) in the same process.

    .venv/bin/python -m bench.watcher_cpu --lists 16 --renames 400 --rounds 3 --ab
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from cctv_daemon.core.clock import SystemClock
from cctv_daemon.segments import staging
from cctv_daemon.segments import watcher as w


def one_round(root: Path, lists: int, renames: int, gap: float, fast: bool, first: int) -> tuple[float, int]:
    seen: list[w.StagedSegment] = []
    done = threading.Event()

    def on_segment(seg: w.StagedSegment) -> None:
        seen.append(seg)
        if len(seen) >= renames:
            done.set()

    wat = w.SegmentWatcher(root, on_segment, clock=SystemClock())
    wat.fast_path = fast
    wat.start()
    cams = [staging.lists_root(root) / f"cam{i}" for i in range(lists)]
    for d in cams:
        d.mkdir(parents=True, exist_ok=True)
    time.sleep(0.5)
    lines: dict[int, list[str]] = {i: [] for i in range(lists)}
    runs = [staging.new_run_id(time.time()) for _ in range(lists)]
    cpu0, me0 = time.process_time(), time.thread_time()
    for k in range(renames):
        i = k % lists
        seg = first + k // lists
        line = f"{runs[i]}_{seg:06d}.mp4,{seg * 10}.000000,{seg * 10 + 10}.000000\n"
        lines[i] = (lines[i] + [line])[-staging.LIST_SIZE:]
        tmp, dst = cams[i] / f"{runs[i]}.csv.tmp", cams[i] / f"{runs[i]}.csv"
        with open(tmp, "w") as f:
            f.write("".join(lines[i]))
        os.rename(tmp, dst)
        time.sleep(gap)
    ok = done.wait(30)
    cpu = (time.process_time() - cpu0) - (time.thread_time() - me0)
    if os.environ.get("BENCH_PER_THREAD"):
        for t in threading.enumerate():
            try:
                ns = int(Path(f"/proc/self/task/{t.native_id}/schedstat").read_text().split()[0])
            except OSError:
                continue
            print(f"   {type(t).__name__:<20} {t.name:<20} {ns / 1e6:8.1f} ms (since its start)")
    wat.stop()
    if not ok:
        raise SystemExit(f"only {len(seen)} of {renames} segments seen")
    return cpu, len(seen)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lists", type=int, default=16)
    ap.add_argument("--renames", type=int, default=400)
    ap.add_argument("--gap", type=float, default=0.01)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ab", action="store_true", help="alternate the fast path and watchdog's plain emitter")
    args = ap.parse_args()
    modes = [True, False] if args.ab else [True]
    res: dict[bool, list[float]] = {m: [] for m in modes}
    first = 0
    for r in range(args.rounds):
        for m in modes if r % 2 == 0 else modes[::-1]:
            with tempfile.TemporaryDirectory(prefix="cctv-bench-watch-") as tmp:
                cpu, n = one_round(Path(tmp), args.lists, args.renames, args.gap, m, first)
            first += args.renames
            res[m].append(1e6 * cpu / n)
            print(f"round {r} {'fast' if m else 'plain'}: {1e6 * cpu / n:.0f} us CPU per rename", flush=True)
    for m, v in res.items():
        print(f"{'fast' if m else 'plain'}: median {statistics.median(v):.0f} us ({min(v):.0f}-{max(v):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
