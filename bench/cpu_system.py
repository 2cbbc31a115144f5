"""CPU users pay, counted system-wide: the recorder and N bare `ffmpeg -f segment` copies (bench/cpu.py) each run
ALONE, in alternating windows, so that what the kernel's own threads do for each side (the flusher's kworkers write a
bare ffmpeg's pages back; the recorder's fsync does that in its own process) is counted for it. Per window: the
side's own CPU (as bench/cpu.py), plus the kernel threads' CPU, and the machine's busy time from /proc/stat minus
the RTSP server's and the bench's own. Needs a quiet machine: everything else running counts too.

    .venv/bin/python -m bench.cpu_system --cameras 16 --seconds 45 --trials 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.cpu import PASSWORD, USER, Group, Recorder, bare, own_cpu, spread, tree_cpu
from tests.support.daemon import wait_for
from tests.support.media import make_h264
from tests.support.rtsp import RtspServer


def kernel_threads_cpu() -> dict[int, float]:
    """CPU seconds of each kernel thread (children of kthreadd, pid 2: the flusher's kworkers that write dirty
    pages back, jbd2 where a journal exists, ...), which no process's own figure counts."""
    total: dict[int, float] = {}
    hz = float(os.sysconf("SC_CLK_TCK"))
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == "2" or entry == "2":  # ppid 2: a kernel thread
            total[int(entry)] = (int(fields[11]) + int(fields[12])) / hz
    return total


def kernel_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """The kernel threads' CPU between two readings: a thread born meanwhile counts whole; one that exited
    meanwhile (kworkers come and go) is lost, so this undercounts a little."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def system_busy() -> float:
    """CPU seconds the whole machine spent busy (every CPU; idle and iowait excluded), from /proc/stat."""
    hz = float(os.sysconf("SC_CLK_TCK"))
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / hz  # user..steal, minus idle and iowait


def solo_window(k: int, side: str, urls: list[str], cred_urls: list[str], root: Path, seconds: float,
                warmup: float, server_pid: int) -> dict[str, float]:
    """One side alone for one window: its own CPU, the kernel threads' CPU, and the machine's busy time minus the
    RTSP server's and the bench's own."""
    runner: Group | Recorder
    if side == "bare":
        runner = Group("bare", bare, cred_urls, root / f"s{k}")
        for i in range(len(urls)):
            runner.launch(i)
    else:
        runner = Recorder(urls, root / f"s{k}-recorder")
        wait_for(runner.connected, 30, "the daemon's ffmpegs")
    try:
        wait_for(runner.writing, 90, f"{side} writing")
        time.sleep(warmup)
        runner.prune()
        me = os.getpid()
        t0 = time.monotonic()
        k0 = kernel_threads_cpu()
        b = (runner.cpu(), system_busy(), tree_cpu(server_pid), own_cpu(me))
        time.sleep(seconds)
        a = (runner.cpu(), system_busy(), tree_cpu(server_pid), own_cpu(me))
        kern = kernel_delta(k0, kernel_threads_cpu())
        wall = time.monotonic() - t0
    finally:
        runner.stop()
    own, busy, server, bench = ((x - y) / wall for x, y in zip(a, b, strict=True))
    kern /= wall
    used = {"own": own, "kernel": kern, "system": busy - server - bench}
    print(f"window {k + 1} {side:<8} ({wall:.1f}s, load {os.getloadavg()[0]:.1f}): own {100 * own:.2f}%  "
          f"+kernel threads {100 * (own + kern):.2f}%  system-wide minus server and bench {100 * used['system']:.2f}%",
          flush=True)
    return used


def system_mode(n: int, trials: int, first: int, urls: list[str], cred_urls: list[str], root: Path, seconds: float,
                warmup: float, server_pid: int) -> None:
    """Alternating windows, only the bare ffmpegs or only the recorder running (which goes first alternates): the
    write-back of the bare ffmpegs' pages by the kernel's threads is counted for them too. Noisy on a shared
    machine (everything else running counts as well): compare within a trial."""
    ratios: dict[str, list[float]] = {}
    for k in range(first, first + trials):
        order = ["bare", "recorder"] if k % 2 == 0 else ["recorder", "bare"]
        got = {side: solo_window(k, side, urls, cred_urls, root, seconds, warmup, server_pid) for side in order}
        b, r = got["bare"], got["recorder"]
        for name, rv, bv in (("own", r["own"], b["own"]),
                             ("own+kernel", r["own"] + r["kernel"], b["own"] + b["kernel"]),
                             ("system", r["system"], b["system"])):
            ratios.setdefault(name, []).append(rv / bv)
    print(f"cameras={n} trials={trials} alternating {seconds:g}s windows, recorder alone / bare alone:")
    for name, v in ratios.items():
        print(f"  {name:<11} {spread(v)}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=45.0, help="length of one window")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after a side writes, before its window")
    ap.add_argument("--trials", type=int, default=3, help="pairs of windows")
    ap.add_argument("--first", type=int, default=0, help="number of the first trial (which side goes first)")
    args = ap.parse_args()
    n = args.cameras
    media = make_h264(None, seconds=10, size="1280x720", fps=25)
    server = RtspServer({f"/cam{i}": ("video", media) for i in range(n)}, user=USER, password=PASSWORD)
    server.start()
    urls = [server.url(f"/cam{i}") for i in range(n)]
    cred_urls = [server.url(f"/cam{i}", USER, PASSWORD) for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-cpu-system-"))
    try:
        assert server.proc is not None
        system_mode(n, args.trials, args.first, urls, cred_urls, tmp, args.seconds, args.warmup, server.proc.pid)
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
