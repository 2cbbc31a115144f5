"""`check`: reconciles the catalog with the disk and the staging folder (docs/segment-lifecycle.md lists the
problems and their repairs). Only files of ours are ever looked at; nothing else in savePath is touched."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cctv_daemon.catalog import recovery as catalog_recovery
from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.core.clock import Clock, SystemClock
from cctv_daemon.recording import orphans
from cctv_daemon.segments import staging

log = structlog.get_logger("cctv_daemon.check")

YOUNG_FILE_S = 30.0  # a running daemon may be inserting such a file right now
STALE_DELETING_S = 60.0
_RUN = re.compile(r"r\d{8}T\d{6}Z-[0-9a-f]{6}")


@dataclass(frozen=True)
class Problem:
    kind: str  # file-without-row | row-without-file | size-mismatch | unfinished-deletion | stray-staging
    path: str  # relative to savePath (or absolute for staging / folders)
    detail: str
    row: SegmentRow | None = None


def active_runs(staging_root: Path) -> set[str]:
    """Runs a live ffmpeg is writing (matched by our staging path in its command line)."""
    runs: set[str] = set()
    for proc in orphans.find_orphans(staging_root):
        try:
            runs.update(m for arg in proc.cmdline() for m in _RUN.findall(arg))
        except Exception:  # the process ended meanwhile
            continue
    return runs


def reconcile(catalog: Catalog, state_dir: Path, clock: Clock | None = None) -> list[Problem]:
    clock = clock or SystemClock()
    now = clock.time()
    problems: list[Problem] = []
    save = catalog.save_path
    live = {r.path: r for r in catalog.segments(states=("complete",), own_only=True)}  # this node's files
    seen: set[str] = set()
    cameras = [d.name for d in catalog_recovery.camera_dirs(save, state_dir)]
    for camera in cameras:
        for disk in catalog_recovery.scan_camera(save, camera):
            rel = disk.row.path
            seen.add(rel)
            row = live.get(rel)
            if row is None:
                if now - disk.mtime >= YOUNG_FILE_S and catalog.get_live(rel, own_only=True) is None:
                    problems.append(Problem("file-without-row", rel, f"{disk.row.size} bytes", disk.row))
            elif row.size != disk.row.size:
                detail = f"catalog {row.size} bytes, disk {disk.row.size}"
                problems.append(Problem("size-mismatch", rel, detail, disk.row))
    for rel, row in live.items():
        if rel not in seen and not catalog.abs(rel).exists():
            problems.append(Problem("row-without-file", rel, "file is gone", row))
    for rel, at in catalog.rows_in_state("deleting"):
        if now - at >= STALE_DELETING_S:
            problems.append(Problem("unfinished-deletion", rel, "deletion interrupted"))
    problems += _stray_staging(staging.staging_root(staging.spool_dir(save)), now)
    # Empty date/camera folders are not problems: the deleter keeps today's and yesterday's on purpose (the
    # finisher may be moving a segment into them), and clearAfterUpload or a prune leaves them behind by design.
    return problems


def _stray_staging(root: Path, now: float) -> list[Problem]:
    if not root.is_dir():
        return []
    active = active_runs(root)
    found: list[Problem] = []
    for cam_dir in staging.camera_dirs(root):
        runs: dict[str, list[Path]] = {}
        for f in cam_dir.iterdir():
            m = _RUN.match(f.name)
            if m and f.is_file():
                runs.setdefault(m.group(0), []).append(f)
        for run, files in sorted(runs.items()):
            newest = max(f.stat().st_mtime for f in files)
            if run in active or now - newest < YOUNG_FILE_S:
                continue
            mp4 = [f for f in files if f.suffix == ".mp4"]
            found.append(Problem("stray-staging", str(cam_dir / run),
                                 f"run of a stopped daemon: {len(mp4)} segment file(s), "
                                 f"{len(files)} file(s)"))
    return found


def repair(catalog: Catalog, state_dir: Path, problems: list[Problem],
           ffmpeg_exe: str | None) -> list[Problem]:
    """Fix what can be fixed; returns the problems left (e.g. stray staging without an ffmpeg to probe)."""
    deleter = SegmentDeleter(catalog)
    left: list[Problem] = []
    for p in problems:
        if p.kind in ("file-without-row", "size-mismatch") and p.row is not None:
            catalog.add_rows([p.row], recovered=True)
            catalog.set_size(p.path, p.row.size)
        elif p.kind == "row-without-file":
            catalog.set_state(p.path, "missing", "check: file gone", abandon_upload=True)
        elif p.kind == "unfinished-deletion":
            deleter.finish(p.path)
        elif p.kind == "stray-staging" and ffmpeg_exe is not None:
            _finish_stray(catalog, state_dir, Path(p.path), ffmpeg_exe)
        else:
            left.append(p)
        log.info("check_repaired", kind=p.kind, path=p.path)
    return left


def _finish_stray(catalog: Catalog, state_dir: Path, run_path: Path, ffmpeg_exe: str) -> None:
    """Finish a dead run's staging files exactly like startup recovery does, cataloguing what comes out."""
    from cctv_daemon.core.events import SegmentBus
    from cctv_daemon.segments.finisher import SegmentFinisher

    bus = SegmentBus()
    bus.subscribe("catalog", catalog.add_segment)
    finisher = SegmentFinisher(catalog.save_path, state_dir, ffmpeg_exe, bus, SystemClock())
    finisher.seed_last_ends(catalog.newest_end())  # names never overlap what is catalogued
    finisher.close_run(run_path.parent, run_path.name)


def run_check(catalog: Catalog, state_dir: Path, *, repair_found: bool, rebuild: bool,
              ffmpeg_exe: str | None) -> dict[str, Any]:
    """What `check` does, as a JSON-able report; run by the CLI alone (no daemon) or inside the daemon (its
    "check" command) so that repairs never race a running daemon."""
    added = catalog_recovery.rebuild(catalog, state_dir, replace=True) if rebuild else None
    problems = reconcile(catalog, state_dir)
    left = problems
    if repair_found and problems:
        repair(catalog, state_dir, problems, ffmpeg_exe)
        left = reconcile(catalog, state_dir)
    return {"rebuilt": added, "found": [problem_json(p) for p in problems],
            "remaining": [problem_json(p) for p in left], "repaired": repair_found}


def problem_json(p: Problem) -> dict[str, str]:
    return {"kind": p.kind, "path": p.path, "detail": p.detail}
