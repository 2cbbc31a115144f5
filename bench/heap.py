"""Python heap growth of the whole hand-off path in one process (watcher -> finisher -> bus -> catalog), measured
with tracemalloc over N segments of one run whose list is rewritten as ffmpeg's -segment_list_size does.
Usage: .venv/bin/python -m bench.heap [--segments 3000] [--rounds 1]
With --rounds N, N rounds of --segments each, every round compared with the one before (what keeps growing). The
bench writes its files with str paths: a Path per segment name here would churn CPython's interned-string table
(pathlib interns every part it parses) and show its reallocation (~1.9 MB) as growth of the daemon's code.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import structlog

from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core.clock import SystemClock
from cctv_daemon.core.events import EventBus
from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
from cctv_daemon.segments import handoff as handoff_mod
from cctv_daemon.segments import staging
from cctv_daemon.segments.finisher import SegmentFinisher
from cctv_daemon.segments.handoff import SegmentHandoff

RUN = "r20261121T100000Z-abcdef"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    root = Path(tempfile.mkdtemp(prefix="cctv-heap-", dir="/var/tmp"))
    save, seed = root / "rec", root / "seed.mp4"
    subprocess.run([find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5", "-t", "1",
                    "-c:v", "libx264", "-g", "5", "-f", "mp4", "-movflags",
                    "+frag_keyframe+empty_moov+default_base_moof", str(seed)], check=True)
    data = seed.read_bytes()
    bus = EventBus()
    fin = SegmentFinisher(save, save / ".cctv", find_ffmpeg(), bus, SystemClock())
    catalog = Catalog.for_state_dir(save / ".cctv", save)
    bus.subscribe("catalog", catalog.add_segment)
    handoff_mod.GATHER_IDLE_S = 0.0  # one segment at a time, each awaited before the next: no batch to gather
    handoff = SegmentHandoff(fin.root, fin)
    cam = fin.root / "cam"
    staging.lists_dir(cam).mkdir(parents=True)
    cam.mkdir(parents=True)
    staging.write_meta(cam, RUN, staging.RunMeta("cam", "main", time.time() - 86400))
    handoff.start()
    lst = os.fspath(staging.list_path(cam, RUN))
    cam_dir = os.fspath(cam)

    def segment(i: int) -> None:
        f = os.path.join(cam_dir, f"{RUN}_{i:06d}.mp4")
        with open(f, "wb") as out:
            out.write(data)
        first = max(0, i - staging.LIST_SIZE + 1)
        with open(lst + ".tmp", "wb") as out:
            out.write(b"".join(f"{RUN}_{j:06d}.mp4,{j}.0,{j + 1}.0\n".encode() for j in range(first, i + 1)))
        os.replace(lst + ".tmp", lst)
        while os.path.exists(f):  # handed off
            time.sleep(0.001)

    def idle() -> None:  # nothing in flight on the hand-off thread when a snapshot is taken
        while handoff.pending():
            time.sleep(0.01)
        time.sleep(0.5)
        gc.collect()

    for i in range(args.warmup):
        segment(i)
    idle()
    tracemalloc.start(5)
    before = tracemalloc.take_snapshot()
    for r in range(args.rounds):
        first = args.warmup + r * args.segments
        for i in range(first, first + args.segments):
            segment(i)
        idle()
        after = tracemalloc.take_snapshot()
        stats = after.compare_to(before, "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"round {r + 1}: python heap growth over {args.segments} segments: {total} B = "
              f"{total / args.segments:.1f} B/segment", flush=True)
        for s in stats[:8]:
            print(" ", s, flush=True)
        before = after
    handoff.stop()
    catalog.close()
    shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
