"""Accelerated soak: N `test` cameras with 1 s segments for M minutes; samples the daemon's RSS, open fds, threads
and the size of its own files (segment lists, run metadata, catalog + WAL) every few seconds, then fits RSS against
the number of segments after warm-up (bytes per segment; issue 12 wants <= 10). Usage:
    .venv/bin/python -m bench.soak --cameras 16 --minutes 20 [--segment 1] [--out soak.json]
        [--no-api] [--probe probe.jsonl] [--env NAME=VALUE ...]
RSS is also split into anonymous and file-backed (/proc/PID/smaps_rollup). --probe puts bench/memprobe first on the
daemon's PYTHONPATH: the daemon itself then logs malloc arenas, SQLite's allocator and Python's heap (see there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from tests.support.daemon import REPO, DaemonProc, wait_for


def own_files(state: Path) -> dict[str, int]:
    """The daemon's bookkeeping files (not footage): largest segment list, all lists, run metadata, catalog."""
    lists = [p.stat().st_size for p in (state / "staging" / ".lists").glob("*/*") if p.is_file()]
    metas = [p.stat().st_size for p in (state / "staging").glob("*/*.json*") if p.is_file()]
    cat = state / "catalog.sqlite3"
    size = {suffix: Path(f"{cat}{suffix}").stat().st_size if Path(f"{cat}{suffix}").exists() else 0
            for suffix in ("", "-wal")}
    return {"list_max": max(lists, default=0), "lists_total": sum(lists), "list_files": len(lists),
            "meta_total": sum(metas), "catalog": size[""], "wal": size["-wal"]}


def rollup_kib(pid: int) -> dict[str, int]:
    """Anonymous (heap, malloc arenas, SQLite's cache) and file-backed parts of a process's RSS, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            out[parts[0].rstrip(":")] = int(parts[1])
    return {"anon_kib": out.get("Anonymous", 0), "file_kib": out.get("Rss", 0) - out.get("Anonymous", 0)}


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--segment", type=int, default=1)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=0.25, help="fraction of the run left out of the fit")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-api", action="store_true", help="run the daemon without its HTTP API")
    ap.add_argument("--probe", type=Path, default=None, help="JSON lines from bench/memprobe inside the daemon")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the daemon's environment")
    args = ap.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    if args.probe:
        env["PYTHONPATH"] = f"{REPO / 'bench' / 'memprobe'}:{REPO}"
        env["RSS_PROBE_OUT"] = str(args.probe.resolve())
    tmp = Path(tempfile.mkdtemp(prefix="cctv-soak-"))
    cams = [{"cameraName": f"c{i:02d}", "source": "test", "videoDuration": args.segment, "resolution": "160x120",
             "frameRate": 5} for i in range(args.cameras)]
    config: dict[str, Any] = {"cameras": cams, "logging": {"file": None, "level": "warning"}}
    if args.no_api:
        config["api"] = {"enabled": False}
    d = DaemonProc(tmp, config, env)
    samples: list[dict[str, Any]] = []
    try:
        d.start()
        assert d.proc is not None
        daemon = psutil.Process(d.proc.pid)
        wait_for(lambda: all(d.segments(str(c["cameraName"])) for c in cams), 120, "a segment of every camera",
                 proc=d.proc)
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        while time.monotonic() < end:
            if d.proc.poll() is not None:
                print("daemon exited", file=sys.stderr)
                return 1
            segs = sum(1 for _ in d.save_path.glob("*/*/*.mp4"))
            s = {"t": round(time.monotonic() - t0, 1), "segments": segs, "rss": daemon.memory_info().rss,
                 **rollup_kib(d.proc.pid),
                 "fds": daemon.num_fds(), "threads": daemon.num_threads(), **own_files(d.state_dir)}
            samples.append(s)
            print(json.dumps(s), flush=True)
            time.sleep(args.every)
        cpu = daemon.cpu_times()
    finally:
        d.close()
    fit = [s for s in samples if s["t"] >= args.warmup * args.minutes * 60]
    per_seg = slope([float(s["segments"]) for s in fit], [float(s["rss"]) for s in fit])
    anon_per_seg = slope([float(s["segments"]) for s in fit], [float(s["anon_kib"]) * 1024 for s in fit])
    first, last = fit[0], fit[-1]
    summary = {
        "cameras": args.cameras, "segment_s": args.segment, "minutes": args.minutes,
        "segments": last["segments"], "rss_bytes_per_segment_after_warmup": round(per_seg, 2),
        "anon_bytes_per_segment_after_warmup": round(anon_per_seg, 2),
        "rss_mib_first_last_after_warmup": [round(first["rss"] / 2**20, 1), round(last["rss"] / 2**20, 1)],
        "rss_mib_max": round(max(s["rss"] for s in samples) / 2**20, 1),
        "fds_min_max": [min(s["fds"] for s in fit), max(s["fds"] for s in fit)],
        "threads_min_max": [min(s["threads"] for s in fit), max(s["threads"] for s in fit)],
        "list_max_bytes": max(s["list_max"] for s in samples),
        "lists_total_max_bytes": max(s["lists_total"] for s in samples),
        "meta_total_max_bytes": max(s["meta_total"] for s in samples),
        "catalog_bytes_last": last["catalog"], "wal_bytes_max": max(s["wal"] for s in samples),
        "daemon_cpu_s": round(cpu.user + cpu.system, 1),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
