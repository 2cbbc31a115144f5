"""Benchmark: readiness (READY=1 on NOTIFY_SOCKET, measured from process start) with a large catalog and a
pending age prune, and how long that prune then takes on retention's thread while the daemon records.

    .venv/bin/python -m bench.readiness [--rows 100000] [--prune 10000] [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.integration.test_storage import NotifyListener
from tests.support.big_catalog import seed
from tests.support.daemon import DaemonProc, pattern_camera, wait_for


def trial(base: Path, template: Path, rows: int, prune: int) -> dict[str, float]:
    tmp = base / f"t{time.time_ns()}"
    tmp.mkdir()
    subprocess.run(["cp", "-a", str(template), str(tmp / "rec")], check=True)  # much faster than copytree
    cams = sorted(p.name for p in (tmp / "rec").iterdir() if not p.name.startswith("."))
    cfg: dict[str, Any] = {
        "cameras": [pattern_camera(cams[0], 2)] + [pattern_camera(n, 2, enabled=False) for n in cams[1:]],
        "storageConfig": {"savePath": str(tmp / "rec"), "retentionDays": 7, "minFreeDiskGB": 0},
        "logging": {"file": None, "level": "warning"}}
    listener = NotifyListener(tmp / "notify.sock")
    d = DaemonProc(tmp, cfg, {"NOTIFY_SOCKET": str(tmp / "notify.sock")})
    try:
        t0 = time.monotonic()
        d.start()
        ready = wait_for(lambda: listener.first("READY=1"), 120, "READY=1", proc=d.proc) - t0

        def retention() -> dict[str, Any] | None:
            res = d.cli("status", "--json")
            return json.loads(res.stdout)["components"]["retention"] if res.returncode == 0 else None

        wait_for(lambda: (r := retention()) and r["deleted"] >= prune, 900, "prune done", interval=0.5, proc=d.proc)
        pruned = time.monotonic() - t0 - ready
        d.stop(60)
        return {"ready": ready, "prune": pruned}
    finally:
        d.close()
        listener.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--prune", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cctv-bench-ready-") as d:
        base = Path(d)
        t = time.monotonic()
        seed(base / "template", [f"c{i}" for i in range(4)], a.rows, a.prune)
        print(f"seeded {a.rows} rows/files ({a.prune} older than 7 days) in {time.monotonic() - t:.1f} s")
        results = [trial(base, base / "template", a.rows, a.prune) for _ in range(a.trials)]
    for r in results:
        print(f"READY=1 after {r['ready']:.2f} s; prune of {a.prune} done {r['prune']:.1f} s after READY")
    print(f"median readiness {statistics.median(r['ready'] for r in results):.2f} s, "
          f"median prune {statistics.median(r['prune'] for r in results):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
