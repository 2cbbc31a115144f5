"""Benchmark: the catalog with 100 000 synthetic segments (insert, `segments` query with gaps, retention check
and prune), and exporting one hour of 720p25 footage. Prints figures; record them in docs/benchmarks.md.

    PYTHONPATH=. python bench/catalog.py [--rows 100000] [--export-minutes 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import structlog

from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.export import export, plan
from cctv_daemon.catalog.retention import Limits, Retention
from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.cli import catalog as cli_catalog
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.segments import names as segment_names

T0 = 1_800_000_000.0


def timed(label: str, fn: object, *args: object) -> object:
    t = time.perf_counter()
    result = fn(*args)  # type: ignore[operator]
    print(f"{label:<58} {time.perf_counter() - t:8.3f} s", file=sys.stderr)
    return result


def synthetic_rows(n: int, cameras: int = 10, seconds: float = 600.0) -> list[SegmentRow]:
    rows = []
    per_cam = n // cameras
    for ci in range(cameras):
        cam = f"cam{ci}"
        for i in range(per_cam):
            start = T0 + i * seconds + ci * 0.37
            if i % 500 == 499:
                start += 120  # a gap now and then
            rows.append(SegmentRow(f"{cam}/{segment_names.date_dir(start)}/"
                                   f"{segment_names.file_name(cam, 'main', start, start + seconds)}",
                                   cam, "main", start, start + seconds, 200_000_000))
    return rows


def bench_catalog(tmp: Path, n: int) -> None:
    save = tmp / "rec"
    cat = Catalog(save / ".cctv" / "catalog.sqlite3", save, FakeClock(T0 + n * 700))
    rows = synthetic_rows(n)
    timed(f"insert {n} rows (batches of 1000)", lambda: [cat.add_rows(rows[i:i + 1000])
                                                         for i in range(0, len(rows), 1000)])
    one = SegmentRow("cam0/x/cam0_main_20300101T000000Z_20300101T001000Z.mp4", "cam0", "main", T0 * 2,
                     T0 * 2 + 600, 1)
    timed("insert 1 row (one segment finished, FULL sync)", cat.add_rows, [one])
    config = tmp / "config.json"
    config.write_text(f'{{"cameras":[{{"cameraName":"cam0","ipAddress":"10.0.0.1"}}],'
                      f'"storageConfig":{{"savePath":"{save}"}}}}')
    from cctv_daemon.cli.main import main

    for label, argv in [("segments (all rows, table, gaps)", ["segments", "--config", str(config)]),
                        ("segments --json (all rows)", ["segments", "--config", str(config), "--json"]),
                        ("segments --camera cam3 --from/--to one day", [
                            "segments", "--config", str(config), "--camera", "cam3",
                            "--from", cli_catalog.iso(T0 + 86400 * 30),
                            "--to", cli_catalog.iso(T0 + 86400 * 31)])]:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            timed(label, main, argv)
    limits = Limits(total_bytes=cat.total_bytes() - 1000 * 200_000_000)
    ret = Retention(cat, SegmentDeleter(cat), limits, FakeClock(T0), free_space=lambda _p: 10**15)
    timed("retention check, nothing to delete (totals from SQL)",
          Retention(cat, SegmentDeleter(cat), Limits(total_bytes=10**18), FakeClock(T0),
                    free_space=lambda _p: 10**15).enforce)
    deleted = timed("retention prune: delete the 1000 oldest of 100 000", ret.enforce)
    print(f"  deleted {deleted} segments")
    cat.close()


def make_source_segment(ffmpeg: str, out: Path, seconds: int) -> None:
    """10 s of 720p25 H.264 ~2.8 Mbit/s (noise keeps the bitrate realistic), fragmented MP4, 1 s GOP."""
    src = f"testsrc2=size=1280x720:rate=25:d={seconds}"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", src,
                    "-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
                    "-b:v", "2800k", "-maxrate", "2800k", "-bufsize", "5600k", "-pix_fmt", "yuv420p",
                    "-movflags", "+frag_keyframe+empty_moov+default_base_moof", str(out)], check=True)


def bench_export(tmp: Path, minutes: int, ffmpeg: str) -> None:
    save = tmp / "exp"
    seg_s = 10
    src = tmp / "source.mp4"
    timed(f"encode one {seg_s} s 720p25 source segment", make_source_segment, ffmpeg, src, seg_s)
    cat = Catalog(save / ".cctv" / "catalog.sqlite3", save, FakeClock(T0))
    rows = []
    for i in range(minutes * 60 // seg_s):
        start = T0 + i * seg_s
        dest = segment_names.final_path(save, "gate", "main", start, start + seg_s)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)  # real copies: the export reads distinct files
        rows.append(SegmentRow(cat.rel(dest), "gate", "main", start, start + seg_s, dest.stat().st_size))
    cat.add_rows(rows)
    total = sum(r.size for r in rows)
    print(f"  {len(rows)} segments, {total / 1e9:.2f} GB ({total * 8 / (minutes * 60) / 1e6:.1f} Mbit/s)")
    os.sync()
    p = plan(cat, "gate", T0 + 3.5, T0 + minutes * 60 - 2.5)
    out = tmp / "clip.mp4"
    timed(f"export {minutes} min of 720p25 (concat, -c copy)", export, ffmpeg, p, out)
    dur = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                          str(out)], capture_output=True, text=True, check=False).stdout.strip()
    print(f"  requested {p.duration:.1f} s, got {dur} s, {out.stat().st_size / 1e9:.2f} GB")
    cat.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--export-minutes", type=int, default=60)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        bench_catalog(tmp, args.rows)
        if args.export_minutes:
            bench_export(tmp, args.export_minutes, ffmpeg)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
