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
from typing import Any

from tests.support.daemon import child_env, wait_for
from tests.support.media import make_h264
from tests.support.rtsp import RtspServer

USER, PASSWORD = "admin", "bench-pass"
PROBE_ENV = "CCTV_BENCH_THREAD_PROBE"  # "warmup_s,window_s,out_file"
PROFILE_ENV = "CCTV_BENCH_PROFILE"  # module:Class.method to profile (cProfile)
TIME_ENV = "CCTV_BENCH_TIME"  # module:Class.method,... to time (CPU time of the calling thread, per call)


def _runtimes() -> dict[int, tuple[int, int, int]]:
    """Per thread: (run time in ns from schedstat, system time in clock ticks from stat, wake-ups: voluntary
    context switches from status, i.e. how often the thread slept and was woken)."""
    out: dict[int, tuple[int, int, int]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            ns = int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            status = Path(f"/proc/self/task/{tid}/status").read_text()
            m = re.search(r"^voluntary_ctxt_switches:\s*(\d+)", status, re.M)
            out[int(tid)] = (ns, int(stat.rsplit(")", 1)[1].split()[12]), int(m.group(1)) if m else 0)
        except (OSError, ValueError, IndexError):
            pass
    return out


def _group(name: str) -> str:
    m = re.match(r"Thread-\d+ \((\w+)\)", name)
    if m:
        return m.group(1)
    return re.sub(r"[-_]?\d+$", "", name)


def _process_cpu() -> float:
    """The whole process's CPU seconds (every thread, those that ended included), as bench/cpu.py counts it."""
    t = os.times()
    return t.user + t.system


def _gc_meter() -> tuple[dict[int, list[float]], list[float]]:
    """The garbage collector's collections per generation: [count, CPU seconds of the collecting thread]."""
    import gc

    per_gen: dict[int, list[float]] = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
    started: list[float] = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            slot = per_gen[info["generation"]]
            slot[0] += 1
            slot[1] += time.thread_time() - started[0]

    gc.callbacks.append(callback)
    return per_gen, started


def _probe(warmup: float, window: float, out_file: str) -> None:
    time.sleep(warmup)
    gc_gens, _ = _gc_meter()
    t0, before, proc0 = time.monotonic(), _runtimes(), _process_cpu()
    time.sleep(window)
    wall, after, proc1 = time.monotonic() - t0, _runtimes(), _process_cpu()
    gc_seen = {str(g): list(v) for g, v in gc_gens.items()}
    names = {t.native_id: (t.name if type(t) is threading.Thread or t.name == "MainThread"
                           else f"{type(t).__name__}") for t in threading.enumerate()}
    me = threading.get_native_id()
    groups: dict[str, list[float]] = {}
    system: dict[str, float] = {}
    wakes: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid, (ns, st, vcs) in after.items():
        if tid == me:
            continue
        g = _group(names.get(tid, "(gone or unnamed)"))
        ns0, st0, vcs0 = before.get(tid, (0, 0, 0))
        groups.setdefault(g, []).append((ns - ns0) / 1e9 / wall)
        system[g] = system.get(g, 0.0) + (st - st0) / tick / wall
        wakes[g] = wakes.get(g, 0.0) + (vcs - vcs0) / wall
    gone = sum(ns for tid, (ns, _, _) in before.items() if tid not in after)
    Path(out_file).write_text(json.dumps({"wall": wall, "groups": groups, "system": system, "wakes": wakes,
                                          "gone_ns": gone, "gc": gc_seen,
                                          "process": (proc1 - proc0) / wall}))


def run_probed() -> int:
    """Entry point inside the daemon process: the probe thread, then the daemon's own main."""
    warmup, window, out_file = os.environ[PROBE_ENV].split(",")
    threading.Thread(target=_probe, args=(float(warmup), float(window), out_file), name="probe",
                     daemon=True).start()
    if os.environ.get(PROFILE_ENV):
        _profile(os.environ[PROFILE_ENV], out_file + ".prof")
    if os.environ.get(TIME_ENV):
        _time(os.environ[TIME_ENV], out_file + ".time", float(warmup), float(window))
    from cctv_daemon.cli.main import main as daemon_main
    return daemon_main()


def _profile(targets: str, out_file: str) -> None:
    """Wrap methods (module:Class.method, comma-separated; none may call another) in one cProfile in CPU time;
    dump the stats when the process exits."""
    import atexit
    import cProfile
    import importlib

    prof = cProfile.Profile(time.thread_time)  # CPU time of the thread, not waits on the disk
    calls: dict[str, int] = {}
    for target in targets.split(","):
        mod_name, qual = target.split(":")
        cls_name, meth = qual.split(".")
        cls = getattr(importlib.import_module(mod_name), cls_name)
        orig = getattr(cls, meth)
        calls[target] = 0

        def wrapped(*a: object, _orig: Any = orig, _target: str = target, **kw: object) -> object:
            calls[_target] += 1
            return prof.runcall(_orig, *a, **kw)

        setattr(cls, meth, wrapped)

    def dump() -> None:
        prof.dump_stats(out_file)
        Path(out_file + ".calls").write_text(", ".join(f"{k} {v}" for k, v in calls.items()))

    atexit.register(dump)


def _time(targets: str, out_file: str, warmup: float, window: float) -> None:
    """Wrap methods (module:Class.method, comma-separated) in a CPU-time counter (time.thread_time(), ~1 us a
    call, unlike cProfile's per-call overhead); only calls inside the probe's window count. Nested targets each
    count their own calls' whole CPU time."""
    import atexit
    import importlib
    import resource

    def nvcsw() -> int:  # the calling thread's voluntary context switches: how often it slept and was woken
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw

    t0 = time.monotonic() + warmup
    t1 = t0 + window
    acc: dict[str, list[float]] = {}
    for target in targets.split(","):
        mod_name, qual = target.split(":")
        owner: Any = importlib.import_module(mod_name)
        if "." in qual:  # Class.method; a bare name is a module-level function (looked up by its callers)
            cls_name, meth = qual.split(".")
            owner = getattr(owner, cls_name)
        else:
            meth = qual
        orig = getattr(owner, meth)
        acc[target] = [0, 0.0, 0]

        def wrapped(*a: object, _orig: Any = orig, _slot: list[float] = acc[target], **kw: object) -> object:
            if not t0 <= time.monotonic() < t1:
                return _orig(*a, **kw)
            switches = nvcsw()
            start = time.thread_time()
            try:
                return _orig(*a, **kw)
            finally:
                _slot[1] += time.thread_time() - start
                _slot[0] += 1
                _slot[2] += nvcsw() - switches

        setattr(owner, meth, wrapped)

    atexit.register(lambda: Path(out_file).write_text(json.dumps(acc)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--warmup", type=float, default=25.0, help="seconds after the daemon starts")
    ap.add_argument("--segment", type=int, default=10)
    ap.add_argument("--live-off", action="store_true", help="live view off (as bench/cpu.py runs the daemon)")
    ap.add_argument("--profile", default="", help="module:Class.method to profile with cProfile (slows it)")
    ap.add_argument("--time", default="",
                    help="module:Class.method or module:function,... to time (CPU time per call, cheap)")
    ap.add_argument("--json", default="", help="also write the per-thread figures to this file")
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
    # An ephemeral API port: with the default one taken (another daemon on the machine) the API thread was missing.
    conf["api"] = {"port": 0, "liveView": not args.live_off}
    cfg.write_text(json.dumps(conf))
    cfg.chmod(0o600)
    env = child_env({PROBE_ENV: f"{args.warmup},{args.seconds},{out_file}", PROFILE_ENV: args.profile,
                     TIME_ENV: args.time})
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
    if args.json:
        Path(args.json).write_text(json.dumps(data))
    prof = Path(f"{out_file}.prof")
    if args.profile and prof.exists():
        import pstats

        print(f"profile (calls: {Path(f'{prof}.calls').read_text()})")
        pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(35)
    timed = Path(f"{out_file}.time")
    if args.time and timed.exists():
        for target, (calls, cpu, switches) in json.loads(timed.read_text()).items():
            print(f"{target}: {calls:.0f} calls in the window, {1e3 * cpu / max(calls, 1):.3f} ms CPU a call,"
                  f" {100 * cpu / data['wall']:.4f} % of a core, {switches / max(calls, 1):.2f} wake-ups a call")
    for gen, (count, cpu) in sorted(data.get("gc", {}).items()):
        print(f"gc generation {gen}: {count / data['wall']:.2f} collections/s, {100 * cpu / data['wall']:.4f} % of a"
              f" core ({1e3 * cpu / max(count, 1):.2f} ms each)")
    groups = data["groups"]
    total = sum(sum(v) for v in groups.values())
    print(f"cameras={n} window={data['wall']:.1f}s segments={args.segment}s daemon total {100 * total:.3f} % of a core"
          f" = {100 * total / n:.4f} % per camera; the whole process {100 * data.get('process', 0.0):.3f} %"
          f" (threads that ended in the window included)")
    for g, v in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {g:<28} threads {len(v):>3}  {100 * sum(v):.3f} %  ({100 * sum(v) / total:.0f} %)"
              f"  of which system ~{100 * data['system'].get(g, 0.0):.3f} %"
              f"  wake-ups {data.get('wakes', {}).get(g, 0.0):.1f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
