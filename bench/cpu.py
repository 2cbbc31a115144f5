"""CPU users pay for recording N RTSP cameras: the recorder against N bare ffmpeg stream copies, same run.

Both sides record the same N streams of one test RTSP server at the same time, so they share the machine's load;
CPU is counted in CPU seconds from /proc (utime+stime of each process, its threads and its reaped children), over
the same window for both sides, which holds on a machine shared with other jobs where wall-clock percentages do
not. The RTSP server's own CPU is not counted. Each trial is one window; the spread over trials is printed.

    .venv/bin/python -m bench.cpu --cameras 16 --seconds 60 --trials 3
        the daemon (and its ffmpegs) against N bare `ffmpeg -f segment` processes (the product's baseline)
    .venv/bin/python -m bench.cpu --cameras 4 --variants ours,piped,loginfo,noprogress,noflush,nolist
        diagnosis: the daemon's ffmpeg command, and that command with one thing changed, each as N processes,
        all against the bare ones in the same windows (the variants put the password in argv: bench only)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import psutil

from cctv_daemon.config.model import CameraConfig
from cctv_daemon.core import constants as c
from cctv_daemon.core.child_env import ffmpeg_env
from cctv_daemon.recording.ffmpeg_command import SegmentOutput, build_command, input_playlist
from cctv_daemon.recording.process_control import _die_with_parent, spawn_kwargs
from tests.support.daemon import DaemonProc, wait_for
from tests.support.media import make_h264
from tests.support.rtsp import RtspServer

USER, PASSWORD = "admin", "bench-pass"
SEGMENT_S = 10
BARE_MOVFLAGS = "movflags=+frag_keyframe+empty_moov+default_base_moof"

JOIN_GAP_S = 1.0  # between starting one client of a stream and the next: each has joined the stream by then
Command = tuple[list[str], bytes | None]  # argv, stdin


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process: itself (all threads), its reaped children, and its live descendants."""
    try:
        p = psutil.Process(pid)
        t = p.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for k in p.children(recursive=True):
            try:
                kt = k.cpu_times()
                total += kt.user + kt.system
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return 0.0


def own_cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except psutil.NoSuchProcess:
        return 0.0


# -- the commands ---------------------------------------------------------------------------------------------
def bare(url: str, out: Path) -> Command:
    """The decided baseline, word for word."""
    return ([
        "ffmpeg", "-rtsp_transport", "tcp", "-i", url, "-c", "copy", "-f", "segment",
        "-segment_time", str(SEGMENT_S), "-segment_format", "mp4", "-segment_format_options", BARE_MOVFLAGS,
        str(out / "%06d.mp4"),
    ], None)  # fmt: skip


def ours(url: str, out: Path) -> Command:
    cam = CameraConfig(cameraName="cam", videoFeedId="cam", url=url, videoDuration=SEGMENT_S)
    seg = SegmentOutput(out, "run")
    seg.list_file.parent.mkdir(parents=True, exist_ok=True)
    return build_command(cam, "ffmpeg", seg), input_playlist(cam)


def _drop(args: list[str], flag: str, n: int = 1) -> list[str]:
    if flag not in args:
        return args
    i = args.index(flag)
    return args[:i] + args[i + 1 + n :]


def direct(url: str, out: Path) -> Command:
    """Ours with the URL on the command line instead of the concat playlist on stdin."""
    args, _ = ours(url, out)
    i = args.index("-i")
    head = ["ffmpeg", "-rtsp_transport", "tcp", "-timeout", str(int(c.DEFAULT_STALL_TIMEOUT_S * 1e6)),
            "-analyzeduration", str(c.RTSP_ANALYZE_DURATION_US), "-i", url]
    return head + args[i + 2 :], None


def noprogress(url: str, out: Path) -> Command:
    args, stdin = ours(url, out)
    return _drop(_drop(args, "-progress"), "-stats_period"), stdin


def noflush(url: str, out: Path) -> Command:
    args, stdin = ours(url, out)
    return [a.replace(":flush_packets=1", "") for a in args], stdin


def nolist(url: str, out: Path) -> Command:
    args, stdin = ours(url, out)
    return _drop(_drop(args, "-segment_list"), "-segment_list_type"), stdin


def noautoconvert(url: str, out: Path) -> Command:
    """Ours with the concat demuxer's automatic bitstream filters off."""
    args, stdin = ours(url, out)
    i = args.index("-i")
    return [*args[:i], "-auto_convert", "0", *args[i:]], stdin


def loginfo(url: str, out: Path) -> Command:
    """Ours with ffmpeg's default log level and format (no `level+` prefix)."""
    args, stdin = ours(url, out)
    return _drop(args, "-loglevel"), stdin


def piped(url: str, out: Path) -> Command:
    """Ours exactly as the daemon runs it: stdout and stderr are pipes read by the bench, the minimal
    environment (core/child_env.py). Group.launch does both for names starting with "piped"."""
    return ours(url, out)


def session(url: str, out: Path) -> Command:
    """Ours in a session of its own with the parent-death signal (recording/process_control.py spawn_kwargs),
    outputs discarded. With the kernel's autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled) each
    session is its own scheduling group. Group.launch applies it to names containing "session"."""
    return ours(url, out)


def oldsession(url: str, out: Path) -> Command:
    """Ours as the daemon started it before the fifth CPU pass: a session of its own (start_new_session) and the
    parent-death signal, outputs discarded. With the kernel's autogroup scheduling
    (/proc/sys/kernel/sched_autogroup_enabled) each session is a scheduling group of its own."""
    return ours(url, out)


def pipedsession(url: str, out: Path) -> Command:
    """Ours exactly as the daemon starts it: pipes read, minimal environment, own session."""
    return ours(url, out)


def threads1(url: str, out: Path) -> Command:
    args, stdin = ours(url, out)
    return [*args[:1], "-threads", "1", *args[1:]], stdin


VARIANTS: dict[str, Callable[[str, Path], Command]] = {
    "bare": bare, "ours": ours, "direct": direct, "noprogress": noprogress, "noflush": noflush, "nolist": nolist,
    "noautoconvert": noautoconvert, "threads1": threads1, "loginfo": loginfo, "piped": piped,
    "session": session, "oldsession": oldsession, "pipedsession": pipedsession,
}


def _drain(stream: IO[bytes]) -> None:
    while stream.read(65536):
        pass


class Group:
    """N ffmpegs, one per stream, started by the bench one at a time (stdout/stderr discarded)."""

    def __init__(self, name: str, make: Callable[[str, Path], Command], urls: list[str], root: Path) -> None:
        self.name = name
        self.make = make
        self.urls = urls
        self.dirs = [root / name.replace("#", "-") / f"cam{i}" for i in range(len(urls))]
        self.procs: list[subprocess.Popen[bytes]] = []

    def launch(self, i: int) -> None:
        self.dirs[i].mkdir(parents=True)
        argv, stdin = self.make(self.urls[i], self.dirs[i])
        pipe = self.name.startswith("piped")
        out = subprocess.PIPE if pipe else subprocess.DEVNULL
        extra: dict[str, Any] = {}
        if self.name.startswith("oldsession"):
            extra = {"start_new_session": True, "preexec_fn": _die_with_parent}
        elif "session" in self.name:
            extra = spawn_kwargs()
        p = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=out, stderr=out,
                             env=ffmpeg_env() if pipe else None, **extra)
        if stdin and p.stdin is not None:
            p.stdin.write(stdin)
            p.stdin.close()
        for stream in (p.stdout, p.stderr) if pipe else ():
            threading.Thread(target=_drain, args=(stream,), daemon=True).start()
        self.procs.append(p)

    def cpu(self) -> float:
        return sum(tree_cpu(p.pid) for p in self.procs)

    def writing(self) -> bool:
        return len(self.procs) == len(self.dirs) and all(any(d.glob("*.mp4")) for d in self.dirs)

    def prune(self) -> None:
        """Keep the disk small: drop all but each camera's newest segment (not CPU the group pays)."""
        for d in self.dirs:
            for f in sorted(d.glob("*.mp4"))[:-1]:
                f.unlink(missing_ok=True)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Recorder:
    """The daemon recording the N streams; its CPU with and without its ffmpegs."""

    name = "recorder"

    def __init__(self, urls: list[str], root: Path) -> None:
        cams = [{"cameraName": f"cam{i}", "url": url, "userName": USER, "password": PASSWORD,
                 "videoDuration": SEGMENT_S} for i, url in enumerate(urls)]
        root.mkdir(parents=True)
        self.n = len(urls)
        # the goal (<= 1.05x bare ffmpeg) is with the live view off; its own cost: bench/live.py
        self.d = DaemonProc(root, {"cameras": cams, "logging": {"file": None},
                                   "api": {"port": 0, "liveView": False}}).start()
        assert self.d.proc is not None
        self.pid = self.d.proc.pid

    def connected(self) -> bool:
        return len(psutil.Process(self.pid).children()) >= self.n

    def writing(self) -> bool:
        staging = self.d.state_dir / "staging"
        return all(any((staging / f"cam{i}").glob("*.mp4")) for i in range(self.n))

    def cpu(self) -> float:
        return tree_cpu(self.pid)

    def own(self) -> float:
        return own_cpu(self.pid)

    def prune(self) -> None:
        pass

    def stop(self) -> None:
        self.d.stop(60)
        self.d.close()


def spread(xs: list[float], fmt: str = "{:.3f}") -> str:
    return f"median {fmt.format(statistics.median(xs))} (min {fmt.format(min(xs))}, max {fmt.format(max(xs))})"


def trial(k: int, names: list[str], urls: list[str], cred_urls: list[str], root: Path, seconds: float,
          warmup: float) -> dict[str, float]:
    """Start every side, let them settle, count CPU over one window, stop them.

    The order in which clients join a stream of the test server changes what each one costs (measured: the last
    to join pays ~15 % more), so no side may always go first: with variants, mount i gets its clients in the
    order of the sides rotated by i (a Latin square when N is a multiple of their number); with the daemon, the
    bare ffmpegs of even mounts start before it and those of odd mounts after it. Trials rotate that too.
    """
    n = len(urls)
    sides: list[Group | Recorder] = []
    order: list[str] = []
    try:
        if "recorder" in names:
            bare_group = Group("bare", bare, cred_urls, root / f"t{k}")
            sides.append(bare_group)
            first = [i for i in range(n) if i % 2 == k % 2]
            for i in first:
                bare_group.launch(i)
            time.sleep(JOIN_GAP_S)
            recorder = Recorder(urls, root / f"t{k}-recorder")
            sides.append(recorder)
            wait_for(recorder.connected, 30, "the daemon's ffmpegs")
            time.sleep(JOIN_GAP_S)
            for i in range(n):
                if i not in first:
                    bare_group.launch(i)
            order = [f"bare first on mounts {first}"]
        else:
            groups = [Group(name, VARIANTS[name.split("#")[0]], cred_urls, root / f"t{k}") for name in names]
            sides += groups
            for p in range(len(groups)):
                for i in range(n):
                    groups[(i + p + k) % len(groups)].launch(i)
                time.sleep(JOIN_GAP_S)
            order = [f"mount 0: {','.join(names[(p + k) % len(names)] for p in range(len(names)))}"]
        wait_for(lambda: all(s.writing() for s in sides), 90,
                 f"every side writing ({[s.name for s in sides if not s.writing()]} not yet)")
        time.sleep(warmup)
        for s in sides:
            s.prune()
        t0 = time.monotonic()
        before = {s.name: s.cpu() for s in sides}
        rec = next((s for s in sides if isinstance(s, Recorder)), None)
        if rec is not None:
            before["daemon"] = rec.own()
        time.sleep(seconds)
        after = {s.name: s.cpu() for s in sides}
        if rec is not None:
            after["daemon"] = rec.own()
        wall = time.monotonic() - t0
    finally:
        for s in sides:
            s.stop()
    used = {name: (after[name] - before[name]) / wall for name in before}
    print(f"trial {k + 1} ({wall:.1f}s, {order[0]}): "
          + "  ".join(f"{name} {100 * v:.2f}%" for name, v in used.items()), flush=True)
    return used


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of one trial window")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds after every side writes, before a window")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--first", type=int, default=0,
                    help="number of the first trial (start orders rotate with it): to interleave separate runs")
    ap.add_argument("--variants", default="",
                    help="comma list of " + ",".join(VARIANTS) + " (name#2 for a second copy); no daemon then")
    args = ap.parse_args()
    n = args.cameras
    variants = [v for v in args.variants.split(",") if v]
    names = ["bare", *(variants or ["recorder"])]
    media = make_h264(None, seconds=10, size="1280x720", fps=25)
    server = RtspServer({f"/cam{i}": ("video", media) for i in range(n)}, user=USER, password=PASSWORD)
    server.start()
    urls = [server.url(f"/cam{i}") for i in range(n)]
    cred_urls = [server.url(f"/cam{i}", USER, PASSWORD) for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-cpu-"))
    results: dict[str, list[float]] = {}
    try:
        for k in range(args.first, args.first + args.trials):
            for name, v in trial(k, names, urls, cred_urls, tmp, args.seconds, args.warmup).items():
                results.setdefault(name, []).append(v)
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    base = results["bare"]
    print(f"cameras={n} trials={args.trials}x{args.seconds:g}s stream=720p25 H.264, stream copy, {SEGMENT_S}s segments")
    print(f"bare ffmpegs: {spread([100 * b for b in base], '{:.2f}')} % of a core")
    if "recorder" in results:
        rec, dmn = results["recorder"], results["daemon"]
        kids = [r - x for r, x in zip(rec, dmn, strict=True)]
        print(f"recorder total / bare: {spread([r / b for r, b in zip(rec, base, strict=True)])}")
        print(f"its ffmpegs / bare:    {spread([k / b for k, b in zip(kids, base, strict=True)])}")
        print(f"daemon alone per camera: {spread([100 * x / n for x in dmn], '{:.4f}')} % of a core")
    for v in variants:
        print(f"{v:<10} / bare: {spread([x / b for x, b in zip(results[v], base, strict=True)])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
