"""Name error against the wall clock, and resume time after an outage.  Usage:
    .venv/bin/python -m bench.names names [--seconds 120] [--rates 1.00,1.01,0.99]
    .venv/bin/python -m bench.names resume [--outages 8,60] [--trials 3]

- names: the RTSP server (GStreamer) logs the wall-clock time at which it sends each keyframe (one every 3 s of
  media); the camera's pipeline clock runs at the given rate; segments of 3 s. Error of a segment = its exact start
  (the `start_at` of segment_finished) minus the keyframe sent nearest to it; reported: max |error| and max
  |name error| (whole-second name vs keyframe) over the run.
- resume: the server is SIGKILLed for the outage, then started again; resume = from the server's restart
  (READY) to (a) the first keyframe the server sends again, (b) the camera's `recording` state. Backoff base 1 s,
  cap 30 s (the defaults).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cctv_daemon.segments import names as segment_names
from tests.support.daemon import DaemonProc, wait_for
from tests.support.media import make_h264
from tests.support.rtsp import RtspServer

USER, PASSWORD = "admin", "bench-pass"


def ts(e: dict[str, Any]) -> float:
    return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()


def camera(server: RtspServer, **extra: Any) -> dict[str, Any]:
    return {"cameraName": "cam", "url": server.url("/cam"), "userName": USER, "password": PASSWORD,
            "videoDuration": 3, **extra}


def name_errors(server: RtspServer, d: DaemonProc) -> tuple[float, float, int]:
    keys = server.keyframes("/cam")
    exact, named, n = 0.0, 0.0, 0
    for e in d.events("segment_finished", camera="cam"):
        nearest = min(keys, key=lambda k: abs(k - e["start_at"]))
        exact = max(exact, abs(e["start_at"] - nearest))
        named = max(named, abs(segment_names.parse_stamp(e["start"]) - nearest))
        n += 1
    return exact, named, n


def bench_names(h264: Path, rate: float, seconds: float) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with RtspServer({"/cam": ("video", h264)}, user=USER, password=PASSWORD,
                        keyframe_log=tmp / "keys.log", clocks={"/cam": rate}) as server:
            d = DaemonProc(tmp, {"cameras": [camera(server)]})
            try:
                d.start()
                d.wait_event("camera_state", 30, camera="cam", state="recording")
                time.sleep(seconds)
                d.stop()
            finally:
                d.close()
            return name_errors(server, d)


def bench_resume(h264: Path, outage: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        server = RtspServer({"/cam": ("video", h264)}, user=USER, password=PASSWORD, keyframe_log=tmp / "k.log")
        d = DaemonProc(tmp, {"cameras": [camera(server)]})
        try:
            server.start()
            d.start()
            d.wait_event("camera_state", 30, camera="cam", state="recording")
            server.kill()
            time.sleep(outage)
            server.start()
            back = time.time()
            d.wait_event("camera_state", 60, count=2, camera="cam", state="recording")
            rec = ts(d.events("camera_state", camera="cam", state="recording")[1])
            keys = wait_for(lambda: [k for k in server.keyframes("/cam") if k >= back - 1], 30, "media")
            return keys[0] - back, rec - back
        finally:
            d.close()
            server.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("names", "resume"))
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--rates", default="1.00,1.01,0.99")
    p.add_argument("--outages", default="8,60")
    p.add_argument("--trials", type=int, default=3)
    args = p.parse_args(argv)
    h264 = make_h264(None, seconds=12, size="320x180", fps=10, gop=30)
    if args.what == "names":
        for rate in (float(r) for r in args.rates.split(",")):
            exact, named, n = bench_names(h264, rate, args.seconds)
            print(f"rate {rate:.2f}: {n} segments over {args.seconds:.0f} s: max |start error| {exact:.3f} s, "
                  f"max |name error| {named:.3f} s", flush=True)
    else:
        for outage in (float(o) for o in args.outages.split(",")):
            trials = [bench_resume(h264, outage) for _ in range(args.trials)]
            media = statistics.median(t[0] for t in trials)
            rec = statistics.median(t[1] for t in trials)
            print(f"outage {outage:.0f} s: first media {media:.2f} s, recording {rec:.2f} s after the return "
                  f"(median of {len(trials)}; max {max(t[1] for t in trials):.2f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
