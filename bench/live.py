"""CPU of the live view per camera: the recorder's ffmpeg command without and with its live HLS output.

N RTSP streams of one test server (720p25 H.264, stream copy, as bench/cpu.py), each recorded twice at the same
time: by the daemon's own command with the live view off ("ours") and on ("live", the tee muxer with the HLS
output into a tmpfs folder). CPU seconds come from /proc (utime+stime) over the same window for both sides;
which side joins a stream first rotates per mount and per trial (bench/cpu.py `trial`). The daemon's own CPU is
not in it: serving the live files is the API's (only while someone watches).

    .venv/bin/python -m bench.live --cameras 4 --seconds 60 --trials 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench import cpu
from cctv_daemon.config.model import CameraConfig
from cctv_daemon.recording.ffmpeg_command import SegmentOutput, build_command, input_playlist
from tests.support.media import make_h264
from tests.support.rtsp import RtspServer

LIVE_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def ours_live(url: str, out: Path) -> cpu.Command:
    cam = CameraConfig(cameraName="cam", videoFeedId="cam", url=url, videoDuration=cpu.SEGMENT_S)
    seg = SegmentOutput(out, "run")
    seg.list_file.parent.mkdir(parents=True, exist_ok=True)
    live_dir = Path(tempfile.mkdtemp(prefix="cctv-bench-live-", dir=LIVE_ROOT))
    return build_command(cam, "ffmpeg", seg, live_dir=live_dir), input_playlist(cam)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=25)
    args = ap.parse_args()
    n = args.cameras
    cpu.VARIANTS["live"] = ours_live
    media = make_h264(None, seconds=10, size=args.size, fps=args.fps)
    server = RtspServer({f"/cam{i}": ("video", media) for i in range(n)}, user=cpu.USER, password=cpu.PASSWORD)
    server.start()
    urls = [server.url(f"/cam{i}") for i in range(n)]
    cred_urls = [server.url(f"/cam{i}", cpu.USER, cpu.PASSWORD) for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-live-"))
    results: dict[str, list[float]] = {"ours": [], "live": []}
    try:
        for k in range(args.trials):
            used = cpu.trial(k, ["ours", "live"], urls, cred_urls, tmp, args.seconds, args.warmup)
            for name in results:
                results[name].append(used[name])
    finally:
        server.close()
        shutil.rmtree(tmp, ignore_errors=True)
        for d in LIVE_ROOT.glob("cctv-bench-live-*"):
            shutil.rmtree(d, ignore_errors=True)
    ours, with_live = results["ours"], results["live"]
    extra = [100 * (b - a) / n for a, b in zip(ours, with_live, strict=True)]
    print(f"cameras={n} trials={args.trials}x{args.seconds:g}s stream={args.size}@{args.fps} H.264, stream copy")
    print(f"ffmpeg per camera, live view off: {cpu.spread([100 * a / n for a in ours], '{:.3f}')} % of a core")
    print(f"ffmpeg per camera, live view on:  {cpu.spread([100 * b / n for b in with_live], '{:.3f}')} % of a core")
    print(f"live view per camera:             {cpu.spread(extra, '{:+.3f}')} % of a core")
    print(f"on / off:                         {cpu.spread([b / a for a, b in zip(ours, with_live, strict=True)])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
