"""Cost of making a segment durable before it is catalogued (issue 12, finding 7): the hand-off of one segment
(SegmentFinisher.finish: tail check, fsync of the data, rename, folder fsyncs, then the catalog's row) timed in three
modes, interleaved: without the data fsync, with it and the row's commit fsynced (synchronous=FULL), with it and
the row's commit not fsynced on its own (today). Each segment is written just before its hand-off, as ffmpeg
does, so its pages are dirty. Usage:
    .venv/bin/python -m bench.fsync [--segments 40] [--seconds 10] [--size 1280x720]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import structlog

from cctv_daemon.catalog import store as store_mod
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core.clock import SystemClock
from cctv_daemon.core.events import EventBus
from cctv_daemon.recording.ffmpeg_command import SEGMENT_FORMAT_OPTIONS
from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
from cctv_daemon.segments import finisher as finisher_mod
from cctv_daemon.segments import staging
from cctv_daemon.segments.finisher import SegmentFinisher
from cctv_daemon.segments.watcher import StagedSegment

RUN = "r20261121T100000Z-abcdef"


def make_segment(path: Path, seconds: int, size: str) -> bytes:
    movflags = SEGMENT_FORMAT_OPTIONS.split(":")[0].split("=", 1)[1]
    subprocess.run([find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-t",
                    str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2800k", "-g", "25", "-f", "mp4",
                    "-movflags", movflags, str(path)], check=True)
    return path.read_bytes()


MODES = {  # name: (data fsync, segment row fsynced on its own)
    "no data fsync": (False, True),  # as the code was before issue 12
    "row fsynced": (True, True),  # as the code was before the fifth CPU pass
    "row relaxed": (True, False),  # today: the row rides on the next durable commit (docs/segment-lifecycle.md)
}


def run(data: bytes, n: int, fsync: bool, root: Path, rows_durable: bool = True) -> tuple[list[float], list[float]]:
    save = root / ("with" if fsync else "without")
    fin = SegmentFinisher(save, save / ".cctv", find_ffmpeg(), EventBus(), SystemClock())
    catalog = Catalog.for_state_dir(save / ".cctv", save)
    fin.bus.subscribe("catalog", catalog.add_segment)
    cam_dir = fin.root / "cam"
    cam_dir.mkdir(parents=True)
    staging.write_meta(cam_dir, RUN, staging.RunMeta("cam", "main", time.time() - 86400))
    saved, saved_rows = finisher_mod.fsync_file, store_mod.SEGMENT_ROWS_DURABLE
    store_mod.SEGMENT_ROWS_DURABLE = rows_durable
    if not fsync:
        finisher_mod.fsync_file = lambda _path: None  # as the code was before issue 12
    wall: list[float] = []
    cpu: list[float] = []
    try:
        for i in range(n):
            f = cam_dir / f"{RUN}_{i:06d}.mp4"
            f.write_bytes(data)  # dirty pages, like a segment ffmpeg has just closed
            seg = StagedSegment("cam", RUN, f, 10.0 * i, 10.0 * (i + 1))
            t0, c0 = time.perf_counter(), time.process_time()
            assert fin.finish(seg) is not None
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    finally:
        finisher_mod.fsync_file, store_mod.SEGMENT_ROWS_DURABLE = saved, saved_rows
        catalog.close()
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=40)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every mode")
    args = ap.parse_args()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # the hand-off's log lines, unprinted
    root = Path(tempfile.mkdtemp(prefix="cctv-fsync-", dir="/var/tmp"))
    data = make_segment(root / "seed.mp4", args.seconds, args.size)
    print(f"segment: {args.seconds} s {args.size}, {len(data) / 1e6:.2f} MB; {args.segments} hand-offs each; "
          f"{root}")
    cpus: dict[str, list[float]] = {}
    for _ in range(args.rounds):  # interleaved: the machine is shared
        for name, (fsync, durable) in MODES.items():
            wall, cpu = run(data, args.segments, fsync, root / f"{time.time_ns()}", durable)
            q = statistics.quantiles(wall, n=20)
            cpus.setdefault(name, []).append(statistics.fmean(cpu) * 1e3)
            print(f"{name:>14}: hand-off median {statistics.median(wall) * 1e3:7.1f} ms  p95 {q[18] * 1e3:7.1f} ms"
                  f"  CPU {statistics.fmean(cpu) * 1e3:6.2f} ms/segment", flush=True)
    for name, v in cpus.items():
        print(f"{name:>14}: CPU per segment median {statistics.median(v):.2f} ms (min {min(v):.2f}, max {max(v):.2f})")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
