"""The fleet's per-camera daemon CPU against a single daemon: the same N RTSP cameras recorded by one daemon on the
SQLite catalog and, at the same time, by a fleet of K daemons (shards 0..K-1) on one PostgreSQL catalog with
camera leases (each fleet daemon records about N/K of them). CPU seconds of the daemon processes alone (their own
threads: the loop, the hand-off, the catalog, the lease thread; not their ffmpegs, which do the same work on both
sides) over the same windows, so both sides share the machine's load. PostgreSQL's own CPU is printed apart.

    .venv/bin/python -m bench.fleet_cpu --cameras 9 --nodes 3 --seconds 60 --trials 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cpu import own_cpu, spread, tree_cpu
from tests.support.daemon import DaemonProc, wait_for
from tests.support.databases import PostgresServer
from tests.support.media import make_h264
from tests.support.rtsp import RtspServer

SEGMENT_S = 10


def config(urls: list[str], **extra: Any) -> dict[str, Any]:
    return {"cameras": [{"cameraName": f"cam{i}", "url": u, "videoDuration": SEGMENT_S} for i, u in enumerate(urls)],
            "storageConfig": {"savePath": "rec"}, "logging": {"level": "warning"}, "api": {"port": 0}, **extra}


def recording(d: DaemonProc) -> int:
    return len(d.ffmpegs())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=9)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    n, k = args.cameras, args.nodes
    media = make_h264(None, seconds=10, size="1280x720", fps=25)
    server = RtspServer({f"/cam{i}": ("video", media) for i in range(n)}).start()
    urls = [server.url(f"/cam{i}") for i in range(n)]
    pg = PostgresServer().start()
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-fleet-"))
    daemons: list[DaemonProc] = []
    single: list[float] = []
    fleet: list[float] = []
    db: list[float] = []
    try:
        (tmp / "single").mkdir()
        one = DaemonProc(tmp / "single", config(urls)).start()
        daemons.append(one)
        nodes = []
        for s in range(k):
            (tmp / f"n{s}").mkdir()
            nodes.append(DaemonProc(tmp / f"n{s}", config(urls, catalog={"url": pg.url},
                                                              fleet={"shards": k, "shard": s, "nodeId": f"node-{s}"}))
                         .start())
        daemons += nodes
        wait_for(lambda: recording(one) == n and sum(recording(d) for d in nodes) == n, 120, "all cameras recording")
        time.sleep(args.warmup)
        assert pg.proc is not None
        for _ in range(args.trials):
            a0, f0, d0 = own_cpu(one.proc.pid), [own_cpu(d.proc.pid) for d in nodes], tree_cpu(pg.proc.pid)
            time.sleep(args.seconds)
            a1, f1, d1 = own_cpu(one.proc.pid), [own_cpu(d.proc.pid) for d in nodes], tree_cpu(pg.proc.pid)
            single.append((a1 - a0) / args.seconds)
            fleet.append((sum(f1) - sum(f0)) / args.seconds)
            db.append((d1 - d0) / args.seconds)
            assert recording(one) == n and sum(recording(d) for d in nodes) == n, "a camera stopped recording"
    finally:
        for d in daemons:
            d.close()
        pg.close()
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"cameras={n} fleet nodes={k} trials={args.trials}x{args.seconds:g}s 720p25 H.264 stream copy, "
          f"{SEGMENT_S}s segments, leaseSeconds 15")
    print(f"single daemon (SQLite), per camera: {spread([100 * x / n for x in single], '{:.4f}')} % of a core")
    print(f"fleet daemons (PostgreSQL + leases), per camera: {spread([100 * x / n for x in fleet], '{:.4f}')} % "
          "of a core")
    print(f"PostgreSQL server (whole fleet): {spread([100 * x for x in db], '{:.3f}')} % of a core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
