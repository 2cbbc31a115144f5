"""The catalog and retention with the real daemon (real ffmpeg test source, real SQLite, real SIGKILL):
a small cap stays respected and oldest footage goes first; crashes during a catalog insert and during a
deletion leave a state that `check` reports clean after the startup recovery; rebuild; export."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.catalog.store import Catalog
from cctv_daemon.config.model import load_config
from cctv_daemon.core import constants as c
from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
from cctv_daemon.service.root import build_daemon
from tests.conftest import DaemonFactory
from tests.support.daemon import wait_for


def catalog_config(cameras: list[str], cap_gb: float | None = None) -> dict[str, Any]:
    storage: dict[str, Any] = {}
    if cap_gb is not None:
        storage["clearWhenFilePathReachGB"] = cap_gb
    return {"cameras": [{"cameraName": n, "source": "test", "videoDuration": 1} for n in cameras],
            "storageConfig": storage, "logging": {"level": "info"}}


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    cat = Catalog(db, db.parent.parent, read_only=True)  # polled: no migration lock, no write
    try:
        return int(str(cat.query(sql)[0][0] or 0))
    finally:
        cat.close()


def our_files(save: Path) -> dict[str, int]:
    return {p.relative_to(save).as_posix(): p.stat().st_size for p in save.glob("*/*/*.mp4")}


def recover_like_startup(cfg: Path, retention: bool = False) -> None:
    """What `cctv-daemon run` does before recording: Daemon.prepare() (staging + catalog recovery); with
    ``retention``, also the retention thread's first pass, which a started daemon runs at once (recovery may
    catalogue the killed run's last partial segment, which can take the folder over its cap until then)."""
    config = load_config(str(cfg))
    daemon = build_daemon(config, find_ffmpeg(config.ffmpegPath), service=False)
    daemon.prepare()
    if retention:
        daemon.storage.retention.enforce()
    daemon.storage.catalog.close()


def test_small_cap_is_respected_and_oldest_go_first(daemon_factory: DaemonFactory) -> None:
    cap = 300_000
    d = daemon_factory(catalog_config(["t1", "t2"], cap_gb=cap / 1e9))
    save = d.save_path
    db = save / ".cctv" / c.CATALOG_FILENAME
    max_seg = 0
    over: list[int] = []

    def deleted_enough() -> bool:
        nonlocal max_seg
        files = our_files(save)
        if files:
            max_seg = max(max_seg, *files.values())
            total = sum(files.values())
            if total > cap + 2 * max_seg:  # at most one segment per camera above the cap
                over.append(total)
        return count(db, "SELECT COUNT(*) FROM segments WHERE state = 'deleted'") >= 6

    wait_for(deleted_enough, 60, "retention deleting segments", proc=d.proc)
    assert d.stop(30) == 0
    assert over == []
    cat = Catalog(db, save)
    assert cat.total_bytes() <= cap
    assert cat.total_bytes() == sum(our_files(save).values())
    deleted = [r.start for r in cat.segments(states=("deleted",))]
    kept = [r.start for r in cat.segments()]
    assert max(deleted) <= min(kept)
    assert {r.camera for r in cat.segments(states=("deleted",))} == {"t1", "t2"}
    res = d.cli("check")
    assert res.returncode == 0, res.stdout + res.stderr
    seg = d.cli("segments", "--json")
    out = json.loads(seg.stdout)
    assert out["totals"]["segments"] == len(kept) and out["version"] == 1
    # a file vanishes behind our back: check reports it (exit 6), --repair fixes it, then clean
    victim = save / out["segments"][-1]["path"]
    victim.unlink()
    res = d.cli("check")
    assert res.returncode == c.EXIT_CHECK_PROBLEMS and "row-without-file" in res.stdout
    assert d.cli("check", "--repair").returncode == 0
    assert d.cli("check").returncode == 0


def test_crash_before_catalog_insert_then_startup_recovery_is_clean(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(catalog_config(["t1"]), {"CCTV_DAEMON_CRASH_AT": "catalog.before_insert"})
    save = d.save_path
    assert d.wait(60) == -signal.SIGKILL
    files_after_crash = our_files(save)
    assert len(files_after_crash) == 1  # renamed to its final place, no row
    db = save / ".cctv" / c.CATALOG_FILENAME
    assert count(db, "SELECT COUNT(*) FROM segments") == 0
    wait_for(lambda: not catalog_recovery_orphans(save), 10, "ffmpeg of the killed daemon to exit")
    recover_like_startup(d.config_path)
    res = d.cli("check")
    assert res.returncode == 0, res.stdout + res.stderr
    files = our_files(save)
    assert set(files_after_crash) <= set(files)
    assert count(db, "SELECT COUNT(*) FROM segments WHERE state = 'complete'") == len(files)


def rows_of(db: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, recovered) of the complete rows."""
    conn = sqlite3.connect(db)
    try:
        return {str(r[0]): (int(r[1]), int(r[2])) for r in conn.execute(
            "SELECT path, size, recovered FROM segments WHERE state = 'complete'")}
    finally:
        conn.close()


def test_power_cut_losing_the_last_segment_rows_then_startup_recovery_is_clean(
        tmp_path: Path, daemon_factory: DaemonFactory) -> None:
    """A segment's row is committed without an fsync of its own (synchronous NORMAL for that transaction): a power
    cut may lose the last such commits, never corrupt the file. Their files are final and fsynced already, so startup
    recovery catalogues them again. Simulated exactly: a consistent copy of the catalog taken while the daemon runs
    (what a cut would leave: every commit up to some point) replaces the catalog after more segments were added."""
    d = daemon_factory(catalog_config(["t1", "t2"]))
    save = d.save_path
    db = save / ".cctv" / c.CATALOG_FILENAME
    wait_for(lambda: count(db, "SELECT COUNT(*) FROM segments") >= 4, 60, "4 segments", proc=d.proc)
    snapshot = tmp_path / "at-the-cut.sqlite3"
    live, copy = sqlite3.connect(db), sqlite3.connect(snapshot)
    try:
        live.backup(copy)
        kept = {str(r[0]) for r in copy.execute("SELECT path FROM segments")}
    finally:
        live.close()
        copy.close()  # the last connection: its -wal is folded into the file and removed
    wait_for(lambda: count(db, "SELECT COUNT(*) FROM segments") >= len(kept) + 4, 60, "4 more segments",
             proc=d.proc)
    assert d.stop(30) == 0
    before = rows_of(db)
    lost = set(before) - kept
    assert len(lost) >= 4 and {p.split("/")[0] for p in lost} == {"t1", "t2"}
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(snapshot, db)  # the power cut: the last commits never reached the disk
    assert count(db, "SELECT COUNT(*) FROM segments") == len(kept)
    recover_like_startup(d.config_path)
    after = rows_of(db)
    assert set(after) == set(before) == set(our_files(save))
    assert all(after[p] == (before[p][0], 1) for p in lost)  # from the files: same sizes, marked recovered
    res = d.cli("check")
    assert res.returncode == 0, res.stdout + res.stderr
    cat = Catalog(db, save)
    try:
        assert cat.total_bytes() == sum(our_files(save).values())  # the totals were lost and rebuilt with them
    finally:
        cat.close()


def catalog_recovery_orphans(save: Path) -> bool:
    from cctv_daemon.recording import orphans

    return bool(orphans.find_orphans(save / ".cctv" / "staging"))


@pytest.mark.parametrize("point", ["deletion.after_mark", "deletion.after_unlink"])
def test_crash_during_deletion_then_startup_recovery_is_clean(daemon_factory: DaemonFactory, point: str) -> None:
    d = daemon_factory(catalog_config(["t1"], cap_gb=40_000 / 1e9), {"CCTV_DAEMON_CRASH_AT": point})
    save = d.save_path
    db = save / ".cctv" / c.CATALOG_FILENAME
    assert d.wait(60) == -signal.SIGKILL
    assert count(db, "SELECT COUNT(*) FROM segments WHERE state = 'deleting'") == 1
    wait_for(lambda: not catalog_recovery_orphans(save), 10, "ffmpeg of the killed daemon to exit")
    recover_like_startup(d.config_path, retention=True)
    assert count(db, "SELECT COUNT(*) FROM segments WHERE state = 'deleting'") == 0
    assert count(db, "SELECT COUNT(*) FROM segments WHERE state = 'deleted'") >= 1
    res = d.cli("check")
    assert res.returncode == 0, res.stdout + res.stderr
    cat = Catalog(db, save)
    assert cat.total_bytes() == sum(our_files(save).values()) <= 40_000


def test_rebuild_from_files_and_export(tmp_path: Path, daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(catalog_config(["t1"]))
    save = d.save_path
    db = save / ".cctv" / c.CATALOG_FILENAME
    wait_for(lambda: count(db, "SELECT COUNT(*) FROM segments") >= 7, 60, "7 segments", proc=d.proc)
    assert d.stop(30) == 0
    before = {(r.path, r.size) for r in Catalog(db, save).segments()}
    for f in save.joinpath(".cctv").glob(c.CATALOG_FILENAME + "*"):
        f.unlink()  # the database is lost
    res = d.cli("check", "--rebuild")
    assert res.returncode == 0, res.stdout + res.stderr
    cat = Catalog(db, save)
    rows = cat.segments()
    assert {(r.path, r.size) for r in rows} == before
    # export from inside the 2nd segment to inside the 6th
    start, end = rows[1].start + 0.3, rows[5].end - 0.2
    out = tmp_path / "clip.mp4"
    res = d.cli("export", "--camera", "t1", "--from", str(start_iso(start)),
                "--to", str(start_iso(end)), "-o", str(out))
    assert res.returncode == 0, res.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            str(out)], capture_output=True, text=True, check=True)
    duration = float(probe.stdout.strip())
    requested = end - start
    gop = 1.0  # the test source has one keyframe a second
    assert requested - 0.2 <= duration <= requested + gop + 0.2, (duration, requested)
    decode = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True,
                            text=True, check=False)
    assert decode.returncode == 0 and decode.stderr.strip() == ""


def start_iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")
