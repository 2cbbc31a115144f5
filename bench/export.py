"""Benchmark `cctv-daemon export` against `cp` of the same bytes and against a hand-made
`ffmpeg -f concat -c copy` of the same segments, every side including `sync`. Interleaved trials.

    PYTHONPATH=. .venv/bin/python bench/export.py [--minutes 15 60] [--trials 3] [--keep DIR]

Footage: one 10 s 720p25 H.264 fragmented-MP4 segment (~2.8 Mbit/s, 1 s GOP, as the recorder writes them)
copied into consecutive catalogued segments. The export range starts 3.5 s after the first segment's start and
ends 2.5 s before the last one's end (both ends are trimmed). Record the figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cctv_daemon.catalog.store import Catalog, SegmentRow  # noqa: E402
from cctv_daemon.core import constants as c  # noqa: E402
from cctv_daemon.core.clock import FakeClock  # noqa: E402
from cctv_daemon.segments import names as segment_names  # noqa: E402

T0 = 1_800_000_000.0
SEG_S = 10


def make_source_segment(ffmpeg: str, out: Path) -> None:
    src = f"testsrc2=size=1280x720:rate=25:d={SEG_S}"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", src, "-vf", "noise=alls=12:allf=t",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-b:v", "2800k", "-maxrate", "2800k",
                    "-bufsize", "5600k", "-pix_fmt", "yuv420p",
                    "-movflags", "+frag_keyframe+empty_moov+default_base_moof", str(out)], check=True)


def make_footage(work: Path, minutes: int, src: Path) -> tuple[Path, list[Path]]:
    save = work / f"rec{minutes}"
    cam = f"gate{minutes}"
    cat = Catalog(save / ".cctv" / c.CATALOG_FILENAME, save, FakeClock(T0))
    files, rows = [], []
    for i in range(minutes * 60 // SEG_S):
        start = T0 + i * SEG_S
        dest = segment_names.final_path(save, cam, "main", start, start + SEG_S)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        files.append(dest)
        rows.append(SegmentRow(cat.rel(dest), cam, "main", start, start + SEG_S, dest.stat().st_size))
    cat.add_rows(rows)
    cat.close()
    cfg = work / f"config{minutes}.json"
    cfg.write_text(json.dumps({"cameras": [{"cameraName": cam, "source": "test"}],
                               "storageConfig": {"savePath": str(save)}}))
    return cfg, files


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, nargs="+", default=[15, 60])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src = work / "source.mp4"
        make_source_segment(ffmpeg, src)
        for minutes in args.minutes:
            cfg, files = make_footage(work, minutes, src)
            total = sum(f.stat().st_size for f in files)
            out = work / "out"
            lst = work / "list.ffconcat"
            lst.write_text("ffconcat version 1.0\n" + "".join(f"file '{f}'\n" for f in files))
            subprocess.run(["sync"], check=True)
            cam = f"gate{minutes}"
            commands = {
                "cp": ["cp", *map(str, files), str(out)],
                "ffmpeg concat": [ffmpeg, "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(lst),
                                  "-c", "copy", str(out / "concat.mp4")],
                "export": [sys.executable, "-m", "cctv_daemon", "export", "--config", str(cfg), "--camera", cam,
                           "--from", iso(T0 + 3.5), "--to", iso(T0 + minutes * 60 - 2.5), "-o",
                           str(out / "clip.mp4"), "--quiet"],
            }
            times: dict[str, list[float]] = {"cp": [], "ffmpeg concat": [], "export": []}
            for _ in range(args.trials):
                for name, argv in commands.items():
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    subprocess.run(["sync"], check=True)
                    times[name].append(timed(argv))
            print(f"{minutes} min: {len(files)} segments, {total / 1e9:.2f} GB")
            base = statistics.median(times["cp"])
            for name, ts in times.items():
                med = statistics.median(ts)
                print(f"  {name:14s} median {med:6.2f} s  (trials {', '.join(f'{t:.2f}' for t in ts)})  "
                      f"{med / base:.2f}x cp")
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work / f"rec{minutes}", ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
