"""Finding our segment files on disk, and the catalog's startup recovery (docs/segment-lifecycle.md): finish
crashed deletions, catalogue files a crash left without a row (cheaply: only the newest date folders of each
camera), or rebuild everything from the files when the database is new."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.core import constants as c
from cctv_daemon.segments import names as segment_names

log = structlog.get_logger("cctv_daemon.catalog")

DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class DiskSegment:
    row: SegmentRow
    mtime: float


def camera_dirs(save_path: Path, state_dir: Path) -> list[Path]:
    """Folders of savePath that may be camera folders: not hidden, not the daemon's state folder."""
    if not save_path.is_dir():
        return []
    state = state_dir.resolve()
    return sorted(p for p in save_path.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.resolve() != state)


_START_STAMP = re.compile(r"_(\d{8}T\d{6}Z)_\d{8}T\d{6}Z(?:~\d+)?\.mp4$")


def scan_camera(save_path: Path, camera: str, since_date: str | None = None,
                since_stamp: str | None = None) -> Iterator[DiskSegment]:
    """Our files of one camera: in {camera}/{YYYY-MM-DD}/, named {camera}_{feed}_{start}_{end}.mp4.
    Anything else is not ours and is not even looked at. With ``since_stamp`` (a start stamp), files whose name
    starts earlier are skipped by their name alone (no parse, no stat: startup stays fast with full folders)."""
    cam_dir = save_path / camera
    if not cam_dir.is_dir():
        return
    for date_dir in sorted(cam_dir.iterdir()):
        if not DATE_DIR.match(date_dir.name) or not date_dir.is_dir():
            continue
        if since_date is not None and date_dir.name < since_date:
            continue
        for f in date_dir.iterdir():
            if not f.name.endswith(c.SEGMENT_EXT):
                continue
            if since_stamp is not None and (m := _START_STAMP.search(f.name)) and m[1] < since_stamp:
                continue
            parsed = segment_names.parse_file_name(f.name, camera)
            if parsed is None:
                continue
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            if not f.is_file():
                continue
            rel = f"{camera}/{date_dir.name}/{f.name}"
            yield DiskSegment(SegmentRow(rel, camera, parsed.feed_id, parsed.start, parsed.end, st.st_size),
                              st.st_mtime)


def newest_end_on_disk(save_path: Path, state_dir: Path) -> dict[str, float]:
    """camera -> the latest end among the segment files of its newest date folder (what the catalog would say,
    read from the files: the catalog database has not answered since the start)."""
    out: dict[str, float] = {}
    for cam_dir in camera_dirs(save_path, state_dir):
        dates = sorted(d.name for d in cam_dir.iterdir() if DATE_DIR.match(d.name) and d.is_dir())
        for date in reversed(dates):
            ends = [d.row.end for d in scan_camera(save_path, cam_dir.name, since_date=date)]
            if ends:
                out[cam_dir.name] = max(ends)
                break
    return out


def rebuild(catalog: Catalog, state_dir: Path, replace: bool = False) -> int:
    """Catalogue every segment file of ours (all camera folders). With replace, the segments rows are dropped
    first (uploads rows are kept). Returns the number of rows added."""
    if replace:
        catalog.delete_all_rows()
    added = 0
    for cam_dir in camera_dirs(catalog.save_path, state_dir):
        rows = (d.row for d in scan_camera(catalog.save_path, cam_dir.name))
        added += catalog.add_rows(rows, recovered=True)
    # Rows found on disk that the catalog did not have is worth a warning; an empty folder (a first start) is not.
    (log.warning if added else log.info)("catalog_rebuilt", added=added, replaced=replace)
    return added


def startup_recover(catalog: Catalog, deleter: SegmentDeleter, state_dir: Path,
                    cameras: Iterable[str], newest_before: dict[str, float] | None = None) -> int:
    """Run by Daemon.prepare() after the finisher's staging recovery. Returns rows added. ``newest_before``: each
    camera's newest row before the staging recovery catalogued the dead run's last segments (a file the crash left
    without a row is older than those, but never older than this)."""
    deleter.finish_all()
    newest = catalog.newest_start()
    if catalog.created or not newest:  # no database, or an empty one (e.g. made by `segments`): rebuild
        return rebuild(catalog, state_dir)
    bound = newest if newest_before is None else newest_before
    added = 0
    for camera in sorted(set(cameras) | set(newest)):
        since = segment_names.date_dir(bound[camera]) if camera in bound else None
        since_stamp = segment_names.stamp(bound[camera]) if camera in bound else None
        rows = (d.row for d in scan_camera(catalog.save_path, camera, since, since_stamp))
        added += catalog.add_rows(rows, recovered=True)
    if added:
        log.warning("catalog_rows_recovered", added=added)
    return added
