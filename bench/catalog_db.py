"""Benchmark: the catalog on SQLite vs PostgreSQL vs MariaDB (same machine, same 100 000 rows): insert rate (batches
of 1000, as recovery does; and one row per transaction, as a finished segment is catalogued), the API's one-day
listing (api/segment_list.py, one camera and all cameras), retention's candidates query and the totals. Servers are
the tests' throwaway ones (tests/support/databases.py). Record the figures in docs/benchmarks.md.

    PYTHONPATH=. python bench/catalog_db.py [--rows 100000] [--backends sqlite,postgresql,mariadb]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from cctv_daemon.api import segment_list
from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.segments import names as segment_names

T0 = 1_800_000_000.0
SEG_S = 600.0
CAMERAS = 10


def rows_for(n: int) -> list[SegmentRow]:
    out = []
    for ci in range(CAMERAS):
        cam = f"cam{ci}"
        for i in range(n // CAMERAS):
            start = T0 + i * SEG_S + ci * 0.37
            out.append(SegmentRow(f"{cam}/{segment_names.date_dir(start)}/"
                                  f"{segment_names.file_name(cam, 'main', start, start + SEG_S)}",
                                  cam, "main", start, start + SEG_S, 200_000_000))
    return out


def ms(fn: Callable[[], Any], repeat: int = 7) -> tuple[float, float]:
    """(median, max) milliseconds of `repeat` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def bench(name: str, cat: Catalog, n: int) -> dict[str, str]:
    from cctv_daemon.catalog import labels

    labels.ensure_table(cat)  # a no-op since the migrations; kept so this runs on the code before them too
    rows = rows_for(n)
    t = time.perf_counter()
    for i in range(0, len(rows), 1000):
        cat.add_rows(rows[i:i + 1000])
    bulk = time.perf_counter() - t
    singles = [SegmentRow(f"x/{i}.mp4", "x", "main", T0 * 2 + i * 10, T0 * 2 + i * 10 + 10, 1) for i in range(200)]
    t = time.perf_counter()
    for r in singles:
        cat.add_rows([r])
    single = (time.perf_counter() - t) / len(singles) * 1000
    day = T0 + 30 * 86400
    one, one_max = ms(lambda: segment_list.listing(cat, "cam3", day, day + 86400, None, 10_000, None))
    every, every_max = ms(lambda: segment_list.listing(cat, None, day, day + 86400, None, 10_000, None))
    oldest, _ = ms(lambda: cat.oldest(limit=100))
    totals, _ = ms(cat.totals)
    return {"backend": name, "bulk insert rows/s": f"{n / bulk:,.0f}", "1 row (ms)": f"{single:.2f}",
            "day, 1 camera (ms)": f"{one:.1f} (max {one_max:.1f})",
            "day, 10 cameras (ms)": f"{every:.1f} (max {every_max:.1f})", "oldest 100 (ms)": f"{oldest:.1f}",
            "totals (ms)": f"{totals:.2f}"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--backends", default="sqlite,postgresql,mariadb")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    tmp = Path(tempfile.mkdtemp(prefix="bench-catalog-db-"))
    results = []
    try:
        for backend in args.backends.split(","):
            save = tmp / backend
            path = save / ".cctv" / "catalog.sqlite3"
            clock = FakeClock(T0 + args.rows * 700)
            if backend == "sqlite":
                results.append(bench(backend, Catalog(path, save, clock), args.rows))
                continue
            from tests.support import databases

            cls = databases.PostgresServer if backend == "postgresql" else databases.MariaDBServer
            server = cls().start()
            try:
                url = server.create_database("bench")
                cat = Catalog(path, save, clock, url=url, node_id="bench")
                results.append(bench(backend, cat, args.rows))
                cat.close()
            finally:
                server.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in results:
        print("| " + " | ".join(r[k] for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
