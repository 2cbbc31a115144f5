"""The cost of the upload reconciliation (issue 12) on a catalog of N segments: a full pass when every segment
has its upload row (startup, hourly), a full pass queueing all of them (a lost catalog rebuilt), and the
incremental pass the daemon runs every 5 s. Real SQLite file, synchronous=FULL. `python -m bench.reconcile`."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import structlog

from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.upload import queue as q
from cctv_daemon.upload.reconcile import Reconciler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=100_000)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    n = args.segments
    root = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    clock = FakeClock()
    catalog = Catalog(root / "catalog.sqlite3", root, clock)
    catalog.add_rows(SegmentRow(f"cam{i % 16}/2026-01-01/cam{i % 16}_main_{i:08d}.mp4", f"cam{i % 16}", "main",
                                1.7e9 + i, 1.7e9 + i + 10, 1000) for i in range(n))
    queue = q.UploadQueue(root / "catalog.sqlite3")
    clock.advance(100)
    rec = Reconciler(queue, "prefix", clock)
    t = time.perf_counter()
    queued = rec.run(full=True)
    print(f"full pass, {n} segments without upload rows: queued {queued} in {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    rec.run(full=True)
    print(f"full pass, {n} segments all with upload rows: {(time.perf_counter() - t) * 1000:.0f} ms")
    times = []
    for k in range(21):
        path = f"cam0/2026-01-02/cam0_main_x{k:04d}.mp4"
        catalog.add_rows([SegmentRow(path, "cam0", "main", 1.8e9 + k, 1.8e9 + k + 10, 5)])
        queue.enqueue(path, "cam0", 1.8e9 + k, 5, "k", clock.time())
        t = time.perf_counter()
        rec.run()
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"incremental pass (1 new segment, {n} catalogued): median {times[10] * 1000:.2f} ms, "
          f"max {times[-1] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
