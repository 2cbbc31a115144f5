"""Where the daemon's own CPU goes, per thread: the daemon records N streams of the test RTSP server; over one
window, each thread's CPU time (/proc/self/task/TID/schedstat, nanoseconds) is read inside the daemon process,
grouped by the thread's Python name (readers by their target, watchdog's by class), and printed per second.

    .venv/bin/python -m bench.threads --cameras 16 --seconds 40
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.support.daemon import child_env, wait_for
from tests.support.media import make_h264
from tests.support.rtsp import RtspServer

USER, PASSWORD = "admin", "bench-pass"
PROBE_ENV = "CCTV_BENCH_THREAD_PROBE"  # "warmup_s,window_s,out_file"
PROFILE_ENV = "CCTV_BENCH_PROFILE"  # module:Class.method to profile (cProfile)


def _runtimes() -> dict[int, tuple[int, int]]:
    """Per thread: (run time in ns from schedstat, system time in clock ticks from stat)."""
    out: dict[int, tuple[int, int]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            ns = int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            out[int(tid)] = (ns, int(stat.rsplit(")", 1)[1].split()[12]))
        except (OSError, ValueError, IndexError):
            pass
    return out


def _group(name: str) -> str:
    m = re.match(r"Thread-\d+ \((\w+)\)", name)
    if m:
        return m.group(1)
    return re.sub(r"[-_]?\d+$", "", name)


def _probe(warmup: float, window: float, out_file: str) -> None:
    time.sleep(warmup)
    t0, before = time.monotonic(), _runtimes()
    time.sleep(window)
    wall, after = time.monotonic() - t0, _runtimes()
    names = {t.native_id: (t.name if type(t) is threading.Thread or t.name == "MainThread"
                           else f"{type(t).__name__}") for t in threading.enumerate()}
    me = threading.get_native_id()
    groups: dict[str, list[float]] = {}
    system: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid, (ns, st) in after.items():
        if tid == me:
            continue
        g = _group(names.get(tid, "(gone or unnamed)"))
        ns0, st0 = before.get(tid, (0, 0))
        groups.setdefault(g, []).append((ns - ns0) / 1e9 / wall)
        system[g] = system.get(g, 0.0) + (st - st0) / tick / wall
    gone = sum(ns for tid, (ns, _) in before.items() if tid not in after)
    Path(out_file).write_text(json.dumps({"wall": wall, "groups": groups, "system": system, "gone_ns": gone}))


def run_probed() -> int:
    """Entry point inside the daemon process: the probe thread, then the daemon's own main."""
    warmup, window, out_file = os.environ[PROBE_ENV].split(",")
    threading.Thread(target=_probe, args=(float(warmup), float(window), out_file), name="probe",
                     daemon=True).start()
    if os.environ.get(PROFILE_ENV):
        _profile(os.environ[PROFILE_ENV], out_file + ".prof")
    from cctv_daemon.cli.main import main as daemon_main
    return daemon_main()


def _profile(target: str, out_file: str) -> None:
    """Wrap one method (module:Class.method) in cProfile; dump the stats when the process exits."""
    import atexit
    import cProfile
    import importlib

    mod_name, qual = target.split(":")
    cls_name, meth = qual.split(".")
    cls = getattr(importlib.import_module(mod_name), cls_name)
    orig = getattr(cls, meth)
    prof = cProfile.Profile(time.thread_time)  # CPU time of the thread, not waits on the disk
    calls = [0]

    def wrapped(*a: object, **kw: object) -> object:
        calls[0] += 1
        return prof.runcall(orig, *a, **kw)

    setattr(cls, meth, wrapped)

    def dump() -> None:
        prof.dump_stats(out_file)
        Path(out_file + ".calls").write_text(str(calls[0]))

    atexit.register(dump)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--warmup", type=float, default=25.0, help="seconds after the daemon starts")
    ap.add_argument("--segment", type=int, default=10)
    ap.add_argument("--live-off", action="store_true", help="live view off (as bench/cpu.py runs the daemon)")
    ap.add_argument("--profile", default="", help="module:Class.method to profile with cProfile (slows it)")
    args = ap.parse_args()
    n = args.cameras
    media = make_h264(None, seconds=10, size="1280x720", fps=25)
    server = RtspServer({f"/cam{i}": ("video", media) for i in range(n)}, user=USER, password=PASSWORD)
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-threads-"))
    out_file = tmp / "threads.json"
    cams = [{"cameraName": f"cam{i}", "url": server.url(f"/cam{i}"), "userName": USER, "password": PASSWORD,
             "videoDuration": args.segment} for i in range(n)]
    cfg = tmp / "config.json"
    conf: dict[str, object] = {"cameras": cams, "logging": {"file": None},
                               "storageConfig": {"savePath": str(tmp / "rec")}}
    if args.live_off:
        conf["api"] = {"liveView": False}
    cfg.write_text(json.dumps(conf))
    cfg.chmod(0o600)
    env = child_env({PROBE_ENV: f"{args.warmup},{args.seconds},{out_file}", PROFILE_ENV: args.profile})
    code = "import sys; from bench.threads import run_probed; sys.exit(run_probed())"
    err = (tmp / "daemon.err").open("wb")  # shown if the daemon exits before the probe's result
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "--config", str(cfg)], cwd=Path.cwd(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        wait_for(lambda: out_file.exists() or proc.poll() is not None, args.warmup + args.seconds + 60,
                 "the probe's result", interval=0.5)
        if not out_file.exists():
            sys.stderr.write((tmp / "daemon.err").read_text()[-3000:])
            return 1
    finally:
        proc.terminate()
        proc.wait(60)
        server.close()
    data = json.loads(out_file.read_text())
    prof = Path(f"{out_file}.prof")
    if args.profile and prof.exists():
        import pstats

        print(f"profile of {args.profile}: {Path(f'{prof}.calls').read_text()} calls")
        pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(35)
    groups = data["groups"]
    total = sum(sum(v) for v in groups.values())
    print(f"cameras={n} window={data['wall']:.1f}s segments={args.segment}s daemon total {100 * total:.3f} % of a core"
          f" = {100 * total / n:.4f} % per camera")
    for g, v in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {g:<28} threads {len(v):>3}  {100 * sum(v):.3f} %  ({100 * sum(v) / total:.0f} %)"
              f"  of which system ~{100 * data['system'].get(g, 0.0):.3f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
