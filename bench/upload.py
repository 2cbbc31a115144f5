"""Upload throughput: the daemon's uploader (durable queue, hashing, verification) vs a bare boto3
``upload_file`` loop over the same files to the same moto_server endpoint, in one run; and the time to drain a
10-minute backlog (60 segments of 10 s at ~2 Mbit/s, 720p-like). Prints the figures.

    PYTHONPATH=. .venv/bin/python bench/upload.py [--files 60] [--mb 2.5]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import structlog

from cctv_daemon.config.model import AwsCredentials, S3Config
from cctv_daemon.upload import queue as q
from cctv_daemon.upload.s3_client import make_client
from cctv_daemon.upload.uploader import Uploader
from tests.support.s3 import MotoServer

BUCKET = "bench-upload"


def make_files(root: Path, count: int, size: int) -> list[Path]:
    files = []
    for i in range(count):
        p = root / "cam" / "2026-11-21" / f"cam_main_{i:04d}.mp4"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))
        files.append(p)
    return files


def fresh_bucket(moto: MotoServer) -> None:
    moto.reset()
    moto.client().create_bucket(Bucket=BUCKET)


def bare(moto: MotoServer, files: list[Path]) -> float:
    fresh_bucket(moto)
    s3 = moto.client()
    t0 = time.perf_counter()
    for f in files:
        s3.upload_file(str(f), BUCKET, f"bare/{f.name}")
    return time.perf_counter() - t0


def daemon_uploader(moto: MotoServer, root: Path, files: list[Path], workers: int) -> float:
    fresh_bucket(moto)
    cfg = S3Config(s3Bucket=BUCKET, s3Path="up", endpointUrl=moto.endpoint, maxConcurrentUploads=workers)
    creds = AwsCredentials("testing", "testing")
    db = root / f"state-{workers}-{time.monotonic_ns()}" / "catalog.sqlite3"
    queue = q.UploadQueue(db)
    up = Uploader(cfg, queue, root, make_client(cfg, creds, workers * 4))
    t0 = time.perf_counter()
    for i, f in enumerate(files):  # what the bus subscriber does for each finished segment
        queue.enqueue(f.relative_to(root).as_posix(), "cam", 1_795_000_000.0 + 10 * i, f.stat().st_size,
                      f"up/cam/{f.name}", time.time())
    up.start()
    while queue.backlog()[0]:
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    up.stop()
    rows = queue.all()
    assert len(rows) == len(files) and all(r.state == q.UPLOADED for r in rows), "not all uploaded"
    queue.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--mb", type=float, default=2.5, help="size of each file (10 s of 720p at ~2 Mbit/s)")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    size = int(args.mb * 1024 * 1024)
    total_mb = args.files * size / 1024 / 1024
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp, MotoServer() as moto:
        root = Path(tmp)
        files = make_files(root, args.files, size)
        bare(moto, files[:3])  # warm-up (imports, connections)
        t_bare = bare(moto, files)
        t_one = daemon_uploader(moto, root, files, 1)
        t_two = daemon_uploader(moto, root, files, 2)
        t_four = daemon_uploader(moto, root, files, 4)
        t_bare2 = bare(moto, files)  # again, to see the drift of a shared machine
    base = min(t_bare, t_bare2)
    print(f"files: {args.files} x {args.mb} MB = {total_mb:.0f} MB, endpoint: moto_server (localhost HTTP)")
    print(f"bare boto3 upload_file loop: {t_bare:.2f} s / {t_bare2:.2f} s ({total_mb / base:.1f} MB/s best)")
    print(f"uploader, 1 worker:          {t_one:.2f} s ({total_mb / t_one:.1f} MB/s), "
          f"ratio {base / t_one:.2f}")
    print(f"uploader, 2 workers:         {t_two:.2f} s ({total_mb / t_two:.1f} MB/s), "
          f"ratio {base / t_two:.2f}")
    print(f"uploader, 4 workers:         {t_four:.2f} s ({total_mb / t_four:.1f} MB/s), "
          f"ratio {base / t_four:.2f}")
    print(f"drain of a 10-minute backlog ({args.files} segments, default 4 workers): {t_four:.2f} s")


if __name__ == "__main__":
    main()
