"""Memory probe for soaks (bench only, never shipped): put this folder first on PYTHONPATH of a daemon under
test and set RSS_PROBE_OUT=file. Every RSS_PROBE_EVERY seconds (default 15) the daemon process appends one JSON
line: /proc/self/smaps_rollup (anonymous vs file-backed RSS), glibc's mallinfo2 (all arenas) and the number of
arenas (malloc_info), SQLite's own allocator (sqlite3_memory_used), Python's allocated blocks and gc objects.
Variants for experiments: RSS_PROBE_ARENA_MAX=n calls mallopt(M_ARENA_MAX, n) here, before any thread starts;
RSS_PROBE_TRACEMALLOC=s starts tracemalloc (3 frames), takes a first snapshot after s seconds and appends to
RSS_PROBE_OUT + ".tm" the 15 largest growths since then at every later sample; RSS_PROBE_TRIM=1 calls glibc's
malloc_trim(0) before every sample (free pages inside the arenas go back to the kernel); RSS_PROBE_FRAMES=n
(default 3) frames for tracemalloc; RSS_PROBE_BIG=bytes appends to RSS_PROBE_OUT + ".big" every new traced block of
at least that size with its whole traceback (CPython's interned-string table, when it resizes, is one such block);
RSS_PROBE_INTERN=1 counts calls of sys.intern (pathlib makes one per path part it parses) by the first caller
outside pathlib, and appends the counts to RSS_PROBE_OUT + ".intern" at every sample."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import tempfile
import threading
import time


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


def _rollup() -> dict[str, int]:
    out: dict[str, int] = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return {k: out.get(k, 0) for k in ("Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Private_Clean")}


def _arenas(libc: ctypes.CDLL) -> int:
    fd, path = tempfile.mkstemp(prefix="memprobe-")
    os.close(fd)
    try:
        fp = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(fp))
        libc.fclose(ctypes.c_void_p(fp))
        with open(path) as f:
            return f.read().count("<heap nr=")
    finally:
        os.unlink(path)


_INTERN_CALLS: dict[str, int] = {}


def _counting_intern(text: str, _real=sys.intern) -> str:  # type: ignore[no-untyped-def]
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.endswith(("pathlib.py", "memprobe/sitecustomize.py")):
        f = f.f_back
    where = f"{f.f_code.co_filename.split('site-packages/')[-1]}:{f.f_lineno}" if f is not None else "?"
    _INTERN_CALLS[where] = _INTERN_CALLS.get(where, 0) + 1
    return _real(text)


def _log_big(out: str, big: int, seen: set[tuple[int, str]], t: float) -> None:
    import tracemalloc

    snap = tracemalloc.take_snapshot()
    for trace in snap.traces:
        key = (trace.size, str(trace.traceback))
        if trace.size >= big and key not in seen:
            seen.add(key)
            with open(out, "a") as f:
                f.write(f"== t={t:.0f} {trace.size} B\n"
                        + "\n".join(f"  {fr.filename}:{fr.lineno}" for fr in trace.traceback) + "\n")


def _loop(out: str, every: float) -> None:
    time.sleep(2)
    if "run" not in sys.argv:
        return
    import sqlite3  # noqa: F401  (loads libsqlite3 the daemon uses)

    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.mallinfo2.restype = _MallInfo2
    lib = ctypes.CDLL("libsqlite3.so.0")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    t0 = time.monotonic()
    tm_after = float(os.environ.get("RSS_PROBE_TRACEMALLOC", "0") or "0")
    first = None
    trim = os.environ.get("RSS_PROBE_TRIM") == "1"
    big = int(os.environ.get("RSS_PROBE_BIG", "0"))
    seen: set[tuple[int, str]] = set()
    while True:
        if big:
            _log_big(out + ".big", big, seen, time.monotonic() - t0)
        if trim:
            libc.malloc_trim(0)
        if tm_after and time.monotonic() - t0 >= tm_after:
            import tracemalloc

            gc.collect()
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, __file__)])
            if first is None:
                first = snap
            else:
                with open(out + ".tm", "a") as f:
                    f.write(f"== t={time.monotonic() - t0:.0f} traced={tracemalloc.get_traced_memory()[0]}\n")
                    for stat in snap.compare_to(first, "traceback")[:15]:
                        f.write(f"{stat.size_diff:+d} B {stat.count_diff:+d} blocks: "
                                + " <- ".join(f"{fr.filename.split('site-packages/')[-1]}:{fr.lineno}"
                                              for fr in stat.traceback) + "\n")
        if _INTERN_CALLS:
            with open(out + ".intern", "a") as f:
                top = sorted(_INTERN_CALLS.items(), key=lambda kv: -kv[1])[:25]
                f.write(json.dumps({"t": round(time.monotonic() - t0, 1), "calls": dict(top)}) + "\n")
        mi = libc.mallinfo2()
        rec = {"t": round(time.monotonic() - t0, 1), **{f"kb_{k}": v for k, v in _rollup().items()},
               "malloc_arena": mi.arena, "malloc_used": mi.uordblks, "malloc_free": mi.fordblks,
               "malloc_mmap": mi.hblkhd, "arenas": _arenas(libc),
               "sqlite_used": lib.sqlite3_memory_used(), "sqlite_high": lib.sqlite3_memory_highwater(0),
               "py_blocks": sys.getallocatedblocks(), "gc_objects": len(gc.get_objects()),
               "threads": threading.active_count()}
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        time.sleep(every)


_OUT = os.environ.get("RSS_PROBE_OUT")
if _OUT:
    _n = os.environ.get("RSS_PROBE_ARENA_MAX")
    if _n:
        ctypes.CDLL(None).mallopt(-8, int(_n))  # M_ARENA_MAX
    if os.environ.get("RSS_PROBE_TRACEMALLOC"):
        import tracemalloc

        tracemalloc.start(int(os.environ.get("RSS_PROBE_FRAMES", "3")))
    if os.environ.get("RSS_PROBE_INTERN") == "1":
        sys.intern = _counting_intern
    threading.Thread(target=_loop, args=(_OUT, float(os.environ.get("RSS_PROBE_EVERY", "15"))), daemon=True,
                     name="memprobe").start()
