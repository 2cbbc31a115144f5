"""Issue 12, the segment side: durable before catalogued (7), staging on savePath's filesystem (8), a run's
metadata .json.tmp left by a kill (11), empty date folders are not problems (12), the segment list reader's memory
flat for the life of a run (16). Real files, real fMP4 from ffmpeg, real SQLite."""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cctv_daemon.catalog import check as catalog_check
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core.clock import SystemClock
from cctv_daemon.core.events import EventBus, FinishedSegment
from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
from cctv_daemon.segments import durable, staging
from cctv_daemon.segments import finisher as finisher_mod
from cctv_daemon.segments.finisher import SegmentFinisher
from cctv_daemon.segments.watcher import StagedSegment, _ListReader
from tests.support import pagecache
from tests.unit.catalog_helpers import put_segment
from tests.unit.test_mp4_tail import make_fmp4

RUN = "r20261121T100000Z-abcdef"
ANCHOR = 1_795_000_000.0


def staged_run(spool: Path, camera: str = "cam", n: int = 1) -> tuple[Path, list[StagedSegment]]:
    cam_dir = staging.staging_root(spool) / camera
    cam_dir.mkdir(parents=True)
    staging.lists_dir(cam_dir).mkdir(parents=True)
    staging.write_meta(cam_dir, RUN, staging.RunMeta(camera, "feed", ANCHOR))
    out = []
    for i in range(n):
        f = cam_dir / f"{RUN}_{i:06d}.mp4"
        make_fmp4(f)
        out.append(StagedSegment(camera, RUN, f, 3.0 * i, 3.0 * (i + 1)))
    return cam_dir, out


def test_segment_data_is_fsynced_before_its_row_is_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save = tmp_path / "rec"
    _cam_dir, [seg] = staged_run(save / ".cctv")
    synced: list[object] = []
    _record_flushes(monkeypatch, synced)
    seen: list[bool] = []
    pages: list[pagecache.PageCounts | None] = []

    def catalog_subscriber(fs: FinishedSegment) -> None:  # stands first on the bus, like the catalog
        st = fs.path.stat()
        seen.append((st.st_dev, st.st_ino) in synced)
        pages.append(pagecache.page_counts(fs.path))

    bus = EventBus()
    bus.subscribe("catalog", catalog_subscriber)
    SegmentFinisher(save, save / ".cctv", find_ffmpeg(), bus, SystemClock()).finish(seg)
    assert seen == [True], "the segment's data was not fsynced before the catalog saw it"
    if pages[0] is not None:  # what the kernel says (cachestat, Linux >= 6.5): no page left to write
        assert pages[0].dirty == 0 and pages[0].writeback == 0, pages[0]


def _record_flushes(monkeypatch: pytest.MonkeyPatch, sink: list[object]) -> None:
    """(st_dev, st_ino) of each file whose data was flushed, in order: by fsync(2) on it, or by syncfs(2) on a
    descriptor of it (segments/durable.py: the whole file system, that file included), after the call returned."""
    real_fsync, real_syncfs = os.fsync, durable._syncfs

    def recording(real: Callable[[int], None]) -> Callable[[int], None]:
        def flush(fd: int) -> None:
            st = os.fstat(fd)
            real(fd)
            sink.append((st.st_dev, st.st_ino))
        return flush

    monkeypatch.setattr(os, "fsync", recording(real_fsync))
    monkeypatch.setattr(durable, "_syncfs", recording(real_syncfs))


def _levels_at_commits(trace: list[str]) -> list[tuple[str, str]]:
    """(the write statement a transaction began with, PRAGMA synchronous in force at its COMMIT), from the
    connection's statement trace."""
    level, first, out = "FULL", "", []
    for stmt in trace:
        up = stmt.strip().upper()
        if up.startswith("PRAGMA SYNCHRONOUS ="):
            level = up.split("=")[1].strip()
        elif up.startswith("BEGIN"):
            first = ""
        elif up.startswith(("INSERT", "UPDATE", "DELETE")) and not first:
            first = " ".join(up.replace("(", " ").split()[:3])
        elif up == "COMMIT":
            out.append((first, level))
    return out


@contextmanager
def _traced_catalog(tmp_path: Path) -> Iterator[tuple[Catalog, list[str]]]:
    """A new catalog under tmp_path/rec and the SQL its writable connection runs from now on (closed after)."""
    save = tmp_path / "rec"
    cat = Catalog.for_state_dir(save / ".cctv", save)
    try:
        assert cat.db.sqlite_conn is not None
        trace: list[str] = []
        cat.db.sqlite_conn.set_trace_callback(trace.append)
        yield cat, trace
    finally:
        cat.close()


def test_segment_row_commit_is_not_fsynced_but_a_deletion_mark_is(tmp_path: Path) -> None:
    """synchronous NORMAL for a segment's row only (startup recovery rebuilds a lost one from its file); every
    other write (here the deletion's 'deleting' mark, which must be durable before the unlink) stays FULL."""
    with _traced_catalog(tmp_path) as (cat, trace):
        assert cat.db.sqlite_conn is not None
        row = put_segment(cat, "cam", ANCHOR, catalogue=False)
        cat.add_segment(FinishedSegment("cam", "main", cat.abs(row.path), row.start, row.end, row.size, RUN))
        cat.set_state(row.path, "deleting", "test")
        assert _levels_at_commits(trace) == [("INSERT INTO SEGMENTS", "NORMAL"), ("UPDATE SEGMENTS SET", "FULL")]
        assert cat.db.sqlite_conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again after the row


def test_consecutive_segment_rows_switch_nothing_and_every_other_commit_is_full(tmp_path: Path) -> None:
    """The connection stays at NORMAL from one segment row to the next (no PRAGMA between them, reads leave it),
    and whatever else commits on it is FULL: a deletion mark, a revived row's general path (durable=True), a
    transaction opened on the engine directly, raw SQL through query(). Startup recovery's rows are durable."""
    with _traced_catalog(tmp_path) as (cat, trace):
        assert cat.db.sqlite_conn is not None
        rows = [put_segment(cat, "cam", ANCHOR + 10 * i, catalogue=False) for i in range(4)]

        def add(i: int) -> None:
            r = rows[i]
            cat.add_segment(FinishedSegment("cam", "main", cat.abs(r.path), r.start, r.end, r.size, RUN))

        add(0)
        add(1)
        assert cat.totals() == {"cam": (2, 2 * rows[0].size)}  # a read between them
        add(2)
        switches = [t for t in trace if t.upper().startswith("PRAGMA SYNCHRONOUS")]
        assert switches == ["PRAGMA synchronous = NORMAL"]  # once, before the first row
        cat.set_state(rows[0].path, "deleting")
        add(3)
        cat.add_rows([rows[0]])  # durable (revives nothing: 'deleting' is live), through the general path
        add(3)  # already there: the fast path backs out, the general path (durable=False) keeps it
        with cat.db.begin() as conn:
            conn.exec_driver_sql("UPDATE segments SET reason = 'x' WHERE path = ?", (rows[1].path,))
        cat.query("UPDATE segments SET reason = 'y' WHERE path = ?", (rows[2].path,))
        with cat.db.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE segments SET reason = 'z' WHERE path = ?", (rows[3].path,))
        levels = _levels_at_commits(trace)
        assert levels == [("INSERT INTO SEGMENTS", "NORMAL")] * 3 + [("UPDATE SEGMENTS SET", "FULL"),
                                                                    ("INSERT INTO SEGMENTS", "NORMAL"),
                                                                    ("", "FULL"), ("", "NORMAL"),
                                                                    ("UPDATE SEGMENTS SET", "FULL"),
                                                                    ("UPDATE SEGMENTS SET", "FULL")], levels
        # one switch each way per change of kind: NORMAL before rows 0, 3 and the second add(3), FULL after each
        assert trace.count("PRAGMA synchronous = NORMAL") == trace.count("PRAGMA synchronous = FULL") == 3
        # query() ran its UPDATE in autocommit (no COMMIT statement): FULL was set before it
        at = next(i for i, t in enumerate(trace) if "reason = 'y'" in t)
        assert [t for t in trace[:at] if t.upper().startswith("PRAGMA SYNCHRONOUS")][-1] == "PRAGMA synchronous = FULL"
        assert cat.db.sqlite_conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_segment_data_is_fsynced_before_the_catalogs_commit_of_its_row(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The same as above with the real catalog on the bus: the file's fsync comes before the COMMIT of its row."""
    save = tmp_path / "rec"
    _cam_dir, [seg] = staged_run(save / ".cctv")
    events: list[object] = []
    _record_flushes(monkeypatch, events)
    bus = EventBus()
    cat = Catalog.for_state_dir(save / ".cctv", save)
    try:
        assert cat.db.sqlite_conn is not None
        cat.db.sqlite_conn.set_trace_callback(events.append)
        bus.subscribe("catalog", cat.add_segment)
        done = SegmentFinisher(save, save / ".cctv", find_ffmpeg(), bus, SystemClock()).finish(seg)
        assert done is not None
        st = done.path.stat()
        synced_at = events.index((st.st_dev, st.st_ino))
        insert_at = next(i for i, e in enumerate(events) if isinstance(e, str) and e.startswith("INSERT INTO segments"))
        commit_at = events.index("COMMIT", insert_at)
        assert synced_at < insert_at < commit_at
    finally:
        cat.close()


def test_staging_is_on_save_paths_filesystem_whatever_state_dir_is(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    save, state = tmp_path / "rec", tmp_path / "elsewhere" / "state"
    fin = SegmentFinisher(save, state, find_ffmpeg(), EventBus(), SystemClock())
    assert fin.root == save / ".cctv" / "staging"
    _cam_dir, [seg] = staged_run(save / ".cctv")
    copies: list[object] = []
    monkeypatch.setattr(finisher_mod.shutil, "copyfile", lambda *a: copies.append(a))
    done = fin.finish(seg)
    assert done is not None and done.path.exists() and copies == []  # one rename, no copy


def test_cross_filesystem_move_never_leaves_a_short_final_file(tmp_path: Path) -> None:
    """A legacy staging folder on another filesystem (/dev/shm is a tmpfs): copy under a hidden name, then rename."""
    if not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem")
    src_dir = Path(os.environ.get("TMPDIR_SHM", "/dev/shm")) / f"cctv-test-{os.getpid()}-{time.time_ns()}"
    src_dir.mkdir()
    try:
        src = src_dir / "a.mp4"
        make_fmp4(src)
        data = src.read_bytes()
        dest = tmp_path / "b.mp4"
        finisher_mod._move(src, dest)
        assert dest.read_bytes() == data and not src.exists()
        assert [p.name for p in tmp_path.iterdir()] == ["b.mp4"]  # no .partial left
    finally:
        for p in src_dir.iterdir():
            p.unlink()
        src_dir.rmdir()


def test_json_tmp_left_by_a_kill_is_recovered_and_repaired(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    spool = save / ".cctv"
    cam_dir, [seg] = staged_run(spool)
    # the kill came while the anchor was written: only the .tmp holds it, the .json is gone
    staging.meta_path(cam_dir, RUN).rename(cam_dir / f"{RUN}.json.tmp")
    fin = SegmentFinisher(save, save / ".cctv", find_ffmpeg(), EventBus(), SystemClock())
    done = fin.recover_all()
    assert [d.feed_id for d in done] == ["feed"]  # the .tmp's metadata was used
    assert not (cam_dir / f"{RUN}.json.tmp").exists()
    assert seg.path.exists() is False


def test_check_repair_removes_a_lone_json_tmp(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    cam_dir = staging.staging_root(save / ".cctv") / "cam"
    cam_dir.mkdir(parents=True)
    tmp = (cam_dir / f"{RUN}.json.tmp")
    tmp.write_text('{"camera": "cam", "feedId": "fe')  # cut short by the kill
    old = time.time() - 3600
    os.utime(tmp, (old, old))
    catalog = Catalog.for_state_dir(save / ".cctv", save)
    problems = catalog_check.reconcile(catalog, save / ".cctv")
    assert [p.kind for p in problems] == ["stray-staging"]
    catalog_check.repair(catalog, save / ".cctv", problems, find_ffmpeg())
    assert not tmp.exists()
    assert catalog_check.reconcile(catalog, save / ".cctv") == []


def test_empty_date_folders_kept_by_the_deleter_are_not_problems(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    catalog = Catalog.for_state_dir(save / ".cctv", save)
    row = put_segment(catalog, "cam", time.time() - 3 * 86400)
    (save / "cam" / "2020-01-01").mkdir()  # emptied long ago (clearAfterUpload, a prune)
    from cctv_daemon.catalog.deletion import SegmentDeleter

    SegmentDeleter(catalog).delete_segment(row.path, "test")
    (save / "other").mkdir()
    (save / "other" / "2026-01-02").mkdir()
    assert catalog_check.reconcile(catalog, save / ".cctv") == []


def _list_bytes(first: int, last: int) -> bytes:
    return b"".join(f"{RUN}_{i:06d}.mp4,{i}.000000,{i + 1}.000000\n".encode() for i in range(first, last + 1))


def test_list_reader_memory_is_flat_and_each_segment_is_handed_on_once(tmp_path: Path) -> None:
    """ffmpeg with -segment_list_size rewrites the list (its last LIST_SIZE entries) to .csv.tmp and renames it."""
    lists = tmp_path / ".lists" / "cam"
    lists.mkdir(parents=True)
    path = lists / f"{RUN}.csv"
    reader = _ListReader(path, tmp_path / "cam")
    handed: list[int] = []

    def segment(i: int) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(_list_bytes(max(0, i - 64 + 1), i))
        os.replace(tmp, path)
        for s in reader.read_new():
            handed.append(int(s.start_s))

    for i in range(300):  # warm-up
        segment(i)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    n = 3000
    for i in range(300, 300 + n):
        segment(i)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename")
                 if s.traceback[0].filename.endswith(("watcher.py", "staging.py")))
    assert handed == list(range(300 + n))
    assert growth / n <= 10, f"{growth / n:.1f} bytes per segment"
