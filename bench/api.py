"""Benchmark of the HTTP API. Prints figures; record them in docs/benchmarks.md.

1. Daemon CPU with the API on and idle vs off: one `test` camera, the daemon process's own CPU (not ffmpeg's)
   over --seconds, runs alternating off/on --rounds times.
2. Latency: GET /api/status and one day of GET /api/segments?camera= with --rows catalogued segments, against
   the API component (uvicorn in its thread, as in the daemon) over a real catalog of synthetic rows.

    .venv/bin/python -m bench.api [--seconds 60] [--rounds 2] [--rows 100000] [--segment 600] [--cameras 10]
                                  [--skip-cpu] [--uploads]

   --uploads gives every row a verified upload (a daemon with s3Config: the listing joins the uploads table).
   The page reads a day in pages of 2000 (api.js SEGMENTS_PAGE): "pages of 2000" is the whole day that way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from cctv_daemon.api.events_stream import EventBroker
from cctv_daemon.api.server import ApiServer
from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.config.model import parse_config
from cctv_daemon.segments import names as segment_names
from cctv_daemon.service.commands import CommandQueue
from cctv_daemon.service.root import catalog_node_id
from cctv_daemon.service.snapshot import CameraSnapshot, SnapshotPublisher
from tests.support.api import Api
from tests.support.daemon import DaemonProc, pattern_camera, wait_for

T0 = 1_800_000_000.0


def daemon_cpu(api_on: bool, seconds: float) -> float:
    """% of one core used by the daemon process alone (ffmpeg excluded) over `seconds`, after a settle time."""
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-api-"))
    cfg = {"cameras": [pattern_camera("cam", duration=10)], "logging": {"file": None},
           "api": {"port": 0} if api_on else {"enabled": False}}
    d = DaemonProc(tmp, cfg)
    try:
        d.start()
        assert d.proc is not None
        d.wait_segments("cam", 1, 60)
        if api_on:
            Api(d)
        time.sleep(5)
        p = psutil.Process(d.proc.pid)
        t0, c0 = time.monotonic(), sum(p.cpu_times()[:2])
        time.sleep(seconds)
        c1, t1 = sum(p.cpu_times()[:2]), time.monotonic()
        return 100.0 * (c1 - c0) / (t1 - t0)
    finally:
        d.close()


def idle_api_cpu(seconds: float) -> float:
    """% of a core used by an idle API server alone (this process: uvicorn's thread while the main thread sleeps)."""
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-api-"))
    config = parse_config({"cameras": [pattern_camera("cam")], "storageConfig": {"savePath": str(tmp)},
                           "api": {"port": 0}})
    snap = SnapshotPublisher(config, time.time()).current
    server = ApiServer(config, "ffmpeg", CommandQueue(), lambda: snap, EventBroker(), catalog_node_id(config))
    server.start()
    try:
        time.sleep(3)
        c0, t0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        return 100.0 * (time.process_time() - c0) / (time.monotonic() - t0)
    finally:
        server.stop()


def server_cpu_s() -> float:
    """CPU seconds of this process's threads other than the calling one (the client): uvicorn's loop and the
    endpoint worker threads. Load-independent, unlike latency on a shared machine."""
    me = threading.get_native_id()
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id != me)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def latency(rows: int, segment_s: float, cameras: int, uploads: bool = False) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="cctv-bench-api-"))
    config = parse_config({"cameras": [pattern_camera(f"cam{i}") for i in range(cameras)],
                           "storageConfig": {"savePath": str(tmp)}, "api": {"port": 0}})
    cat = Catalog.for_state_dir(config.storageConfig.state_dir, tmp)
    per_cam = rows // cameras
    t = time.perf_counter()
    for ci in range(cameras):
        batch = []
        for i in range(per_cam):
            start = T0 + i * segment_s + ci * 0.37
            batch.append(SegmentRow(f"cam{ci}/{segment_names.date_dir(start)}/"
                                    f"{segment_names.file_name(f'cam{ci}', 'main', start, start + segment_s)}",
                                    f"cam{ci}", "main", start, start + segment_s, 1_000_000))
            if len(batch) == 1000:
                cat.add_rows(batch)
                batch = []
        cat.add_rows(batch)
    if uploads:
        from sqlalchemy import literal, select

        s, u = cat.db.t.segments, cat.db.t.uploads
        with cat.transaction() as db:
            db.execute(u.insert().from_select(
                ["node_id", "path", "camera", "start", "size", "s3_key", "state", "queued_at"],
                select(s.c.node_id, s.c.path, s.c.camera, s.c.start, s.c.size, literal("k/") + s.c.path,
                       literal("uploaded"), literal(0.0))))
    print(f"catalogued {rows} segments of {segment_s:g} s in {time.perf_counter() - t:.1f} s"
          f"{' (all uploaded)' if uploads else ''}", file=sys.stderr)
    pub = SnapshotPublisher(config, time.time())
    snap = pub.publish(config=config, now=time.time(), monotonic=time.monotonic(), phase="running",
                       cameras={f"cam{i}": CameraSnapshot("recording", "media flowing", time.time(), None, 0, 1, 0,
                                                         0, None, None, True) for i in range(cameras)},
                       components=[], refresh_all=True)
    server = ApiServer(config, "ffmpeg", CommandQueue(), lambda: snap, EventBroker(), catalog_node_id(config))
    server.start()
    try:
        from cctv_daemon.api import auth

        token = auth.read(config.storageConfig.state_dir).viewer
        with httpx.Client(base_url=str(server.url), headers={"Authorization": f"Bearer {token}"}) as c:
            # 200 or 503: up (the bench's snapshot is never refreshed, so health goes stale after LOOP_STALE_S)
            wait_for(lambda: c.get("/api/health").status_code in (200, 503), 20, "API up")
            # A whole day of footage: the 4th day, or the last full day when the rows span fewer days.
            day0 = T0 + min(86400 * 3, max(0.0, per_cam * segment_s - 86400))
            for label, path, params, n in [
                ("GET /api/status", "/api/status", {}, 500),
                ("GET /api/segments one camera, one day", "/api/segments",
                 {"camera": "cam0", "from": str(day0), "to": str(day0 + 86400)}, 100),
                ("GET /api/segments all cameras, one day", "/api/segments",
                 {"from": str(day0), "to": str(day0 + 86400)}, 100),
            ]:
                times = []
                size = 0
                cpu0 = server_cpu_s()
                for _ in range(n):
                    t = time.perf_counter()
                    r = c.get(path, params=params)
                    times.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text
                    size = len(r.content)
                extra = f", server CPU {(server_cpu_s() - cpu0) / n * 1000:.1f} ms a request"
                if path == "/api/segments":
                    extra += f", {len(r.json()['segments'])} segments"
                print(f"{label:<40} p50 {statistics.median(times):6.1f} ms  p99 {pct(times, 0.99):6.1f} ms"
                      f"  ({n} requests, {size / 1e6:.2f} MB{extra})")
            paged(c, {"camera": "cam0", "from": str(day0), "to": str(day0 + 86400)}, 2000, 50)
        breakdown(cat, day0)
    finally:
        server.stop()
        cat.close()


def breakdown(cat: Catalog, day0: float, n: int = 50) -> None:
    """In this process, no HTTP: the catalog query alone vs the whole listing (query + JSON), one camera's day."""
    from cctv_daemon.api import segment_list

    q, whole = [], []
    for _ in range(n):
        t = time.perf_counter()
        rows = segment_list._rows(cat, "cam0", day0, day0 + 86400, segment_list.MAX_LIMIT + 1, None)
        q.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        segment_list.listing(cat, "cam0", day0, day0 + 86400, None, segment_list.MAX_LIMIT, None)
        whole.append((time.perf_counter() - t) * 1000)
    print(f"{'  in process: the query alone':<40} p50 {statistics.median(q):6.1f} ms  p99 {pct(q, 0.99):6.1f} ms"
          f"  ({len(rows)} rows); query + JSON p50 {statistics.median(whole):6.1f} ms  p99 {pct(whole, 0.99):6.1f} ms")


def paged(c: httpx.Client, params: dict[str, str], limit: int, n: int) -> None:
    """A whole day read as the page reads it: pages of `limit`, following `next`."""
    per_page, per_day = [], []
    segs = pages = 0
    for _ in range(n):
        cursor: str | None = None
        t_day = time.perf_counter()
        segs = pages = 0
        while True:
            t = time.perf_counter()
            r = c.get("/api/segments", params={**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})})
            per_page.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            doc = r.json()
            segs += len(doc["segments"])
            pages += 1
            cursor = doc["next"]
            if cursor is None:
                break
        per_day.append((time.perf_counter() - t_day) * 1000)
    print(f"{'  one camera, one day, pages of ' + str(limit):<40} p50 {statistics.median(per_page):6.1f} ms  p99 "
          f"{pct(per_page, 0.99):6.1f} ms per page; the whole day ({pages} pages, {segs} segments) p50 "
          f"{statistics.median(per_day):6.1f} ms  p99 {pct(per_day, 0.99):6.1f} ms ({n} days read)")


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in psutil.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--segment", type=float, default=600.0, help="segment length of the synthetic rows, seconds")
    ap.add_argument("--cameras", type=int, default=10)
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--uploads", action="store_true", help="every row uploaded (the listing joins the uploads table)")
    args = ap.parse_args()
    if not args.skip_cpu:
        alone = idle_api_cpu(args.seconds)
        print(f"idle API server alone (uvicorn thread, {args.seconds:g} s): {alone:.4f} % of a core")
        off, on = [], []
        for _ in range(args.rounds):
            off.append(daemon_cpu(False, args.seconds))
            on.append(daemon_cpu(True, args.seconds))
            print(f"daemon CPU: API off {off[-1]:.3f} %, API on (idle) {on[-1]:.3f} % of a core", file=sys.stderr)
        print(f"daemon CPU (median of {args.rounds}): API off {statistics.median(off):.3f} %, API on (idle) "
              f"{statistics.median(on):.3f} %, difference {statistics.median(on) - statistics.median(off):+.3f} %"
              " of a core")
    print(f"before: {load()}")
    latency(args.rows, args.segment, args.cameras, args.uploads)
    print(f"after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
