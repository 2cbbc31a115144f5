"""Stall-detection and resume times (median of 5) for a silent stall and for a killed server, and the coverage of
a healthy camera recorded next to a chaotic one.  Usage:  .venv/bin/python -m bench.recovery [--trials 5]

- silent stall: the RTSP server is SIGSTOPped; detection = time until the daemon logs stall_detected
  (stallTimeout is the default 10 s); resume = time from SIGCONT until the camera is `recording` again.
- killed server: SIGKILL; detection = time until the camera leaves `recording`; resume = time from the server's
  restart until `recording` again (backoff base 1 s, cap 30 s: the defaults; steadyAfter 5 s so that every trial
  starts from a reset backoff).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.support.daemon import DaemonProc, wait_for
from tests.support.media import coverage, make_h264
from tests.support.rtsp import RtspServer

USER, PASSWORD = "admin", "bench-pass"
STEADY = 5.0


def ts(e: dict[str, Any]) -> float:
    return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()


def states(d: DaemonProc, cam: str, state: str) -> list[dict[str, Any]]:
    return [e for e in d.events("camera_state", camera=cam) if e["state"] == state]


def newer(fetch: Callable[[], list[dict[str, Any]]], n_before: int, what: str, timeout: float = 90) -> float:
    """Wait until ``fetch`` has more than ``n_before`` events; the time of the newest."""
    wait_for(lambda: len(fetch()) > n_before, timeout, what)
    return ts(fetch()[-1])


def wait_recording_after(d: DaemonProc, cam: str, n_before: int) -> float:
    return newer(lambda: states(d, cam, "recording"), n_before, "recording")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    media = make_h264(None, seconds=10, size="640x360", fps=10)
    chaotic = RtspServer({"/cam": ("video", media)}, user=USER, password=PASSWORD).start()
    healthy = RtspServer({"/cam": ("video", media)}, user=USER, password=PASSWORD).start()
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-"))
    cams = [{"cameraName": name, "url": srv.url("/cam"), "userName": USER, "password": PASSWORD, "videoDuration": 5}
            for name, srv in (("chaotic", chaotic), ("healthy", healthy))]
    # steadyAfter 5 s: each trial starts from a reset backoff ("not in a long backoff"); the benchmark waits for it.
    d = DaemonProc(tmp, {"cameras": cams, "logging": {"file": None}, "supervisor": {"steadyAfter": STEADY}})
    stall_detect, stall_resume, kill_detect, kill_resume = [], [], [], []
    try:
        d.start()
        d.wait_segments("chaotic", 1, 60)
        for _ in range(args.trials):
            n = len(states(d, "chaotic", "recording"))
            k = len(d.events("stall_detected", camera="chaotic"))
            t = time.time()
            chaotic.pause()
            stall_detect.append(newer(lambda: d.events("stall_detected", camera="chaotic"), k, "stall") - t)
            t = time.time()
            chaotic.resume()
            stall_resume.append(wait_recording_after(d, "chaotic", n) - t)
            time.sleep(STEADY + 1)
            n = len(states(d, "chaotic", "recording"))
            b = len(states(d, "chaotic", "backoff"))
            t = time.time()
            chaotic.kill()
            kill_detect.append(newer(lambda: states(d, "chaotic", "backoff"), b, "backoff") - t)
            time.sleep(2)
            t = time.time()
            chaotic.start()
            kill_resume.append(wait_recording_after(d, "chaotic", n) - t)
            time.sleep(STEADY + 1)
        assert d.stop(60) == 0
    finally:
        d.close()
        chaotic.close()
        healthy.close()

    def row(name: str, values: list[float]) -> None:
        print(f"{name:<28} median {statistics.median(values):6.2f} s   (all: {', '.join(f'{v:.2f}' for v in values)})")

    print(f"trials={args.trials} stallTimeout=10s backoff base=1s cap=30s steadyAfter={STEADY:g}s")
    row("silent stall: detection", stall_detect)
    row("silent stall: resume", stall_resume)
    row("killed server: detection", kill_detect)
    row("killed server: resume", kill_resume)
    for cam in ("healthy", "chaotic"):
        ratio, m, w = coverage(d.segments(cam))
        print(f"coverage {cam:<8} {ratio:.5f}  ({m:.1f} s media over {w:.1f} s wall, "
              f"{len(d.segments(cam))} segments)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
