"""Coverage and cost of recording N RTSP cameras for M minutes.

Prints per camera the coverage (recorded media seconds / wall seconds, from the files ffmpeg wrote) and the
daemon's own CPU and RSS next to its ffmpegs'.  Usage:
    .venv/bin/python -m bench.coverage --cameras 4 --minutes 2 [--segment 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.support.daemon import DaemonProc, wait_for
from tests.support.media import coverage, make_h264
from tests.support.rtsp import RtspServer

USER, PASSWORD = "admin", "bench-pass"


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--segment", type=int, default=10, help="videoDuration in seconds")
    args = ap.parse_args()
    n = args.cameras
    media = make_h264(None, seconds=10, size="1280x720", fps=25)
    server = RtspServer({f"/cam{i}": ("video", media) for i in range(1, n + 1)}, user=USER, password=PASSWORD)
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-"))
    cams = [{"cameraName": f"cam{i}", "url": server.url(f"/cam{i}"), "userName": USER, "password": PASSWORD,
             "videoDuration": args.segment} for i in range(1, n + 1)]
    d = DaemonProc(tmp, {"cameras": cams, "logging": {"file": None}})
    try:
        d.start()
        assert d.proc is not None
        daemon = psutil.Process(d.proc.pid)
        for cam in cams:
            d.wait_segments(str(cam["cameraName"]), 1, 60)
        kids = wait_for(lambda: (k := daemon.children()) and len(k) >= n and k, 30, "all ffmpegs")
        t0, d0, f0 = time.monotonic(), cpu_seconds([daemon]), cpu_seconds(kids)
        rss_d: list[float] = []
        rss_f: list[float] = []
        end = t0 + args.minutes * 60
        while time.monotonic() < end:
            rss_d.append(daemon.memory_info().rss / 2**20)
            rss_f.extend(k.memory_info().rss / 2**20 for k in kids if k.is_running())
            time.sleep(5)
        wall = time.monotonic() - t0
        d_cpu, f_cpu = cpu_seconds([daemon]) - d0, cpu_seconds(kids) - f0
        assert d.stop(60) == 0
    finally:
        d.close()
        server.close()
    print(f"cameras={n} minutes={args.minutes:g} segment={args.segment}s stream=720p25 H.264 (stream copy)")
    print(f"{'camera':<8} {'segments':>8} {'coverage':>9} {'media s':>8} {'wall s':>8}")
    ratios = []
    for cam in cams:
        segs = d.segments(str(cam["cameraName"]))
        ratio, m, w = coverage(segs)
        ratios.append(ratio)
        print(f"{cam['cameraName']:<8} {len(segs):>8} {ratio:>9.5f} {m:>8.1f} {w:>8.1f}")
    print(f"coverage min={min(ratios):.5f} median={statistics.median(ratios):.5f}")
    print(f"daemon  CPU {100 * d_cpu / wall:.3f}% of a core = {100 * d_cpu / wall / n:.4f}% per camera; "
          f"RSS max {max(rss_d):.1f} MiB")
    print(f"ffmpegs CPU {100 * f_cpu / wall:.3f}% of a core = {100 * f_cpu / wall / n:.4f}% per camera; "
          f"RSS per ffmpeg median {statistics.median(rss_f):.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
