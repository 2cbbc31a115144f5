"""CPU of the segment hand-off, per finished segment and per step, in-process (issue 10, sixth CPU pass).

The daemon is assembled as `cctv-daemon run` assembles it (service/root.py build_daemon, logging as cli/run.py sets
it up: JSON to the stream and to the rotating file), its components are not started; each segment is written into
staging (dirty pages, as ffmpeg leaves them) and handed to the real SegmentFinisher.finish, which publishes to the
real bus (catalog row, retention wake-up, camera counters, uploader with --s3, the API's event broker). CPU is
this thread's (time.thread_time), so the machine's load does not count. Steps are timed by wrapping the finisher
module's helpers, its logger and each bus subscriber; "other" is the rest of finish(). The retention thread's check
per wake-up (Retention.enforce) is timed apart: it runs on its own thread, once per segment at most.

A/B: `--against DIR` runs the same worker with DIR's code (DIR/.venv/bin/python, cwd DIR) interleaved with this
tree's, `--rounds` times each:
    .venv/bin/python -m bench.handoff_cpu --against /work/main --rounds 3 --segments 300
    .venv/bin/python -m bench.handoff_cpu --profile 200       # cProfile in thread-CPU time, this tree only
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUN = "r20261121T100000Z-abcdef"
CAMERAS = 4
HERE = Path(__file__).resolve()


def make_segment(path: Path, seconds: int, size: str) -> bytes:
    """A fragmented MP4 like the daemon's ffmpeg writes (frag_keyframe+empty_moov+default_base_moof)."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-t",
                    str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2800k", "-g", "25", "-f", "mp4",
                    "-movflags", "+frag_keyframe+empty_moov+default_base_moof", str(path)], check=True)
    return path.read_bytes()


class _Steps:
    def __init__(self) -> None:
        self.acc: dict[str, float] = {}
        self.stack: list[float] = []  # nested timed calls: an inner step's time is not its caller's

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.thread_time()
            self.stack.append(0.0)
            try:
                return fn(*a, **kw)
            finally:
                inner = self.stack.pop()
                dt = time.thread_time() - t0
                self.acc[name] = self.acc.get(name, 0.0) + dt - inner
                if self.stack:
                    self.stack[-1] += dt
        return timed


class _TimedLog:
    def __init__(self, inner: Any, steps: _Steps) -> None:
        self._inner, self._steps = inner, steps

    def __getattr__(self, name: str) -> Any:
        return self._steps.wrap(f"log.{name}", getattr(self._inner, name))


def worker(args: argparse.Namespace) -> dict[str, Any]:
    from cctv_daemon.config.model import parse_config
    from cctv_daemon.core.log_setup import setup_logging
    from cctv_daemon.segments import finisher as fm
    from cctv_daemon.segments import staging
    from cctv_daemon.segments.timeline import Observed
    from cctv_daemon.segments.watcher import StagedSegment
    from cctv_daemon.service.root import build_daemon

    root = Path(tempfile.mkdtemp(prefix="cctv-handoff-", dir=args.tmp))
    data = Path(args.segment_file).read_bytes()
    conf: dict[str, Any] = {
        "cameras": [{"cameraName": f"cam{i}", "source": "test", "videoDuration": 10} for i in range(CAMERAS)],
        "storageConfig": {"savePath": str(root / "rec"), "stateDir": str(root / "state")},
        "api": {"port": 0},
    }
    if args.s3:
        conf["s3Config"] = {"s3Bucket": "bench", "s3Path": "cctv", "endpointUrl": "http://127.0.0.1:9",
                            "region": "us-east-1"}
        conf["awsCredentials"] = {"accessKeyId": "bench", "secretAccessKey": "bench-secret"}
    config = parse_config(conf, base_dir=root)
    sc = config.storageConfig
    stream = (root / "stdout.log").open("w")  # the daemon's stdout: JSON (journald, a pipe or a file)
    setup_logging("info", sc.state_dir / "logs" / "cctv-daemon.log", stream=stream)
    daemon = build_daemon(config, "ffmpeg")
    fin = daemon.finisher
    steps = _Steps()
    for name, step in (("truncate_incomplete_tail", "tail check"), ("check_tail", "tail check"),
                       ("fsync_file", "fsync of the data"), ("_move", "rename + folder fsyncs"),
                       ("_rename", "rename")):
        if hasattr(fm, name):  # the tail check's name differs between versions
            setattr(fm, name, steps.wrap(step, getattr(fm, name)))
    if hasattr(fm.durable, "flush_all"):  # tenth pass: the data, then the folders, each flushed by flush_all
        fm.durable.flush_all = steps.wrap("flush_all (data, then folders)", fm.durable.flush_all)
    fm.log = _TimedLog(fm.log, steps)  # type: ignore[assignment]
    bus = fin.bus
    bus._subs = [(name, kind, steps.wrap(f"bus.{name}", fn)) for name, kind, fn in bus._subs]
    if hasattr(bus, "_by_type"):
        bus._by_type = {}  # its per-type cache of the subscribers (ninth pass) must see the wrapped ones
    retention = daemon.storage.retention
    base_wall, base_mono = time.time() - 86400, time.monotonic()
    cam_dirs = []
    for i in range(CAMERAS):
        cam_dir = fin.root / f"cam{i}"
        cam_dir.mkdir(parents=True, exist_ok=True)
        staging.write_meta(cam_dir, RUN, staging.RunMeta(f"cam{i}", "main", base_wall))
        cam_dirs.append(cam_dir)
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile(time.thread_time)
    total = args.warmup + args.segments
    per_step: dict[str, list[float]] = {}
    finish_cpu: list[float] = []
    retention_cpu: list[float] = []
    for n in range(total):
        i, cam = divmod(n, CAMERAS)
        f = cam_dirs[cam] / f"{RUN}_{i:06d}.mp4"
        with open(f, "wb") as out:
            out.write(data)  # dirty pages, like a segment ffmpeg has just closed
        t = 10.0 * (i + 1)
        staged = StagedSegment(f"cam{cam}", RUN, os.fspath(f), 10.0 * i, t, Observed(base_wall + t, base_mono + t))
        steps.acc.clear()
        if prof is not None and n >= args.warmup:
            prof.enable()
        c0 = time.thread_time()
        assert fin.finish(staged) is not None
        c1 = time.thread_time()
        if prof is not None:
            prof.disable()
        retention.enforce()
        c2 = time.thread_time()
        if n < args.warmup:
            continue
        finish_cpu.append(c1 - c0)
        retention_cpu.append(c2 - c1)
        for k, v in steps.acc.items():
            per_step.setdefault(k, []).append(v)
        per_step.setdefault("other", []).append((c1 - c0) - sum(steps.acc.values()))
    if prof is not None:
        import pstats

        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(args.top)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(args.top)
    daemon.storage.catalog.close()
    stream.close()
    shutil.rmtree(root, ignore_errors=True)
    mean = statistics.fmean
    return {"finish": mean(finish_cpu), "retention": mean(retention_cpu),
            "finish_median": statistics.median(finish_cpu),
            "steps": {k: sum(v) / len(finish_cpu) for k, v in per_step.items()}}


def _run_worker(python: str, cwd: Path, args: argparse.Namespace, seg_file: Path) -> dict[str, Any]:
    cmd = [python, str(HERE), "--worker", "--segments", str(args.segments), "--warmup", str(args.warmup),
           "--segment-file", str(seg_file), "--tmp", args.tmp] + (["--s3"] if args.s3 else [])
    out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(cwd)})
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _fmt(v: list[float]) -> str:
    return f"{statistics.median(v) * 1e3:6.3f} ({min(v) * 1e3:.3f}-{max(v) * 1e3:.3f})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--against", default="", help="another checkout (with its .venv) to compare, interleaved")
    ap.add_argument("--s3", action="store_true", help="with s3Config: the uploader's enqueue subscribes too")
    ap.add_argument("--seconds", type=int, default=2, help="media per segment (size of the file fsynced)")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--tmp", default="/var/tmp")
    ap.add_argument("--profile", type=int, default=0, help="cProfile this many segments (this tree, one run)")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--segment-file", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    seg_dir = Path(tempfile.mkdtemp(prefix="cctv-handoff-seg-", dir=args.tmp))
    seg_file = seg_dir / "seg.mp4"
    size = len(make_segment(seg_file, args.seconds, args.size))
    if args.profile:
        args.segments, args.worker, args.segment_file = args.profile, True, str(seg_file)
        worker(args)
        shutil.rmtree(seg_dir, ignore_errors=True)
        return 0
    trees = {"this": (sys.executable, HERE.parent.parent)}
    if args.against:
        other = Path(args.against).resolve()
        trees = {"against": (str(other / ".venv/bin/python"), other), **trees}
    print(f"segment {size / 1e6:.2f} MB, {args.segments} hand-offs per run (+{args.warmup} warm-up), "
          f"{CAMERAS} cameras, s3={'on' if args.s3 else 'off'}; CPU ms per segment, median (min-max) of "
          f"{args.rounds} interleaved rounds", flush=True)
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
    order = list(trees)
    for r in range(args.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            python, cwd = trees[name]
            res = _run_worker(python, cwd, args, seg_file)
            results[name].append(res)
            print(f"  round {r + 1} {name:>7}: finish {res['finish'] * 1e3:.3f} ms (median "
                  f"{res['finish_median'] * 1e3:.3f}), retention check {res['retention'] * 1e3:.3f} ms", flush=True)
    steps = sorted({k for v in results.values() for res in v for k in res["steps"]})
    print(f"{'step':<34}" + "".join(f"{name:>28}" for name in trees))
    for key in ["finish", "retention"] + [f"  {s}" for s in steps]:
        row = []
        for name in trees:
            vals = [res[key] if key in res else res["steps"].get(key.strip(), 0.0) for res in results[name]]
            row.append(_fmt(vals))
        print(f"{key:<34}" + "".join(f"{c:>28}" for c in row))
    shutil.rmtree(seg_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
