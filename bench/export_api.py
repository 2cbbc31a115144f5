"""Benchmark: export streaming throughput of the HTTP API (`GET /api/export`) against reading the same bytes from
disk. Prints figures; record them in docs/benchmarks.md.

    PYTHONPATH=. .venv/bin/python bench/export_api.py [--minutes 15] [--trials 5]

Footage as bench/export.py makes it: one 10 s 720p25 H.264 fragmented-MP4 segment (~2.8 Mbit/s) copied into
consecutive catalogued segments. The API component runs in this process (uvicorn in its thread, as in the
daemon); the client is `curl` (another process, so it does not share this interpreter's GIL) writing to
/dev/null. Both sides read from the page cache (warm: every side runs once before the timed trials), so this
measures the API's own cost, not the disk's. Sides, interleaved in each trial:

- `cat`: `cat` of the segment files to /dev/null (the bytes from disk, no processing);
- `python read`: this process reading the files in 1 MiB chunks (what the export's reader does, without HTTP);
- `export, no HTTP`: the API's clip generator in this process (catalog/export.py `stream()` + the SHA-256 the
  API computes, api/media.py), without HTTP: what HTTP adds is the difference to the next line;
- `GET /api/export`: the whole range (trimmed 3.5 s after the first segment's start and 2.5 s before the last
  one's end, so both ends are cut), streamed over loopback HTTP, SHA-256 included (the API computes it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hashlib  # noqa: E402

from bench.export import SEG_S, T0, make_footage, make_source_segment  # noqa: E402
from cctv_daemon.api import auth  # noqa: E402
from cctv_daemon.api.events_stream import EventBroker  # noqa: E402
from cctv_daemon.api.server import ApiServer  # noqa: E402
from cctv_daemon.catalog import export as catalog_export  # noqa: E402
from cctv_daemon.catalog.store import Catalog  # noqa: E402
from cctv_daemon.config.model import parse_config  # noqa: E402
from cctv_daemon.service.commands import CommandQueue  # noqa: E402
from cctv_daemon.service.root import catalog_node_id  # noqa: E402
from cctv_daemon.service.snapshot import SnapshotPublisher  # noqa: E402
from tests.support.daemon import wait_for  # noqa: E402


def read_all(files: list[Path]) -> int:
    n = 0
    for f in files:
        with f.open("rb") as fh:
            while data := fh.read(1 << 20):
                n += len(data)
    return n


def curl(url: str, token: str) -> tuple[int, float]:
    """(bytes received, seconds) of one GET, as curl measures them."""
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}", "-w",
                          "%{http_code} %{size_download} %{time_total}", url],
                         capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "200":
        raise RuntimeError(f"GET {url}: HTTP {out[0]}")
    return int(out[1]), float(out[2])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=15)
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    work = Path(tempfile.mkdtemp(prefix="bench-export-api-"))
    server: ApiServer | None = None
    try:
        src = work / "source.mp4"
        make_source_segment(ffmpeg, src)
        cfg_path, files = make_footage(work, args.minutes, src)
        total = sum(f.stat().st_size for f in files)
        raw = json.loads(cfg_path.read_text())
        config = parse_config({**raw, "api": {"port": 0}})
        snap = SnapshotPublisher(config, time.time()).current
        server = ApiServer(config, ffmpeg, CommandQueue(), lambda: snap, EventBroker(), catalog_node_id(config))
        server.start()
        base = str(wait_for(lambda: server.url if server is not None else None, 20, "API listening"))
        token = auth.read(config.storageConfig.state_dir).viewer
        cam = config.cameras[0].cameraName
        url = f"{base}/api/export?camera={cam}&from={T0 + 3.5}&to={T0 + args.minutes * 60 - 2.5}"
        cat_files = ["cat", *map(str, files)]

        def run_cat() -> tuple[int, float]:
            t = time.perf_counter()
            subprocess.run(cat_files, stdout=subprocess.DEVNULL, check=True)
            return total, time.perf_counter() - t

        def run_read() -> tuple[int, float]:
            t = time.perf_counter()
            n = read_all(files)
            return n, time.perf_counter() - t

        catalog = Catalog.for_state_dir(config.storageConfig.state_dir, config.storageConfig.savePath)

        def run_generator() -> tuple[int, float]:
            t = time.perf_counter()
            plan = catalog_export.plan(catalog, cam, T0 + 3.5, T0 + args.minutes * 60 - 2.5)
            sha, n = hashlib.sha256(), 0
            for chunk in catalog_export.stream(ffmpeg, plan):
                sha.update(chunk)
                n += len(chunk)
            return n, time.perf_counter() - t

        sides = {"cat": run_cat, "python read": run_read, "export, no HTTP": run_generator,
                 "GET /api/export": lambda: curl(url, token)}
        for fn in sides.values():
            fn()  # warm: every side reads from the page cache
        results: dict[str, list[tuple[int, float]]] = {name: [] for name in sides}
        for _ in range(args.trials):
            for name, fn in sides.items():
                results[name].append(fn())
        print(f"{args.minutes} min of 720p25 H.264: {len(files)} segments of {SEG_S} s, {total / 1e6:.0f} MB; "
              f"{args.trials} interleaved trials, warm page cache")
        base_rate = statistics.median(n / t for n, t in results["cat"]) / 1e6
        for name, rs in results.items():
            rates = [n / t / 1e6 for n, t in rs]
            med = statistics.median(rates)
            print(f"  {name:16s} {rs[-1][0] / 1e6:7.1f} MB  median {med:7.0f} MB/s  (min {min(rates):.0f}, max "
                  f"{max(rates):.0f})  {med / base_rate:.2f}x cat")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
