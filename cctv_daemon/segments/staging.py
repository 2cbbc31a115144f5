"""The staging folder where ffmpeg writes: {spool}/staging/{camera}/{run}_NNNNNN.mp4 and {run}.json (camera,
feed id and the wall-clock anchor of media time 0); the run's segment list, written by ffmpeg, is kept apart in
{spool}/staging/.lists/{camera}/{run}.csv so that watching the lists does not wake up on every media write.

The spool is always {savePath}/.cctv (the default stateDir), whatever stateDir says: staging must be on savePath's
filesystem so that the hand-off of a segment is one atomic rename (docs/segment-lifecycle.md)."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cctv_daemon.core import constants as c

_SEGMENT = re.compile(r"^(?P<run>r\d{8}T\d{6}Z-[0-9a-f]{6})_(?P<index>\d{6,})\.mp4$")
# ffmpeg keeps only the last LIST_SIZE entries in a run's segment list (it rewrites {run}.csv.tmp and renames it
# over {run}.csv after each segment), so the list file stays a few kB however long the run lasts.
LIST_SIZE = 64


def spool_dir(save_path: Path) -> Path:
    """Where staging (and quarantined segments) live: on savePath's filesystem, always."""
    return save_path / c.STATE_DIRNAME


def staging_root(spool: Path) -> Path:
    return spool / c.STAGING_DIRNAME


def damaged_dir(spool: Path) -> Path:
    return spool / c.DAMAGED_DIRNAME


def lists_root(root: Path) -> Path:
    return root / c.STAGING_LISTS_DIRNAME


def lists_dir(cam_dir: Path) -> Path:
    """Where ffmpeg's segment lists of the runs whose segments are in ``cam_dir`` go."""
    return lists_root(cam_dir.parent) / cam_dir.name


def list_path(cam_dir: Path, run_id: str) -> Path:
    return lists_dir(cam_dir) / f"{run_id}.csv"


def camera_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def new_run_id(now: float) -> str:
    return (
        "r"
        + datetime.fromtimestamp(now, tz=timezone.utc).strftime(c.TIME_FORMAT)
        + "-"
        + secrets.token_hex(3)
    )


def run_of_segment(path: Path) -> str | None:
    m = _SEGMENT.match(path.name)
    return m["run"] if m else None


def segment_index(name: str) -> tuple[str, int] | None:
    """(run id, index) of a staging segment's file name, or None if the name is not one of ours."""
    m = _SEGMENT.match(name)
    return (m["run"], int(m["index"])) if m else None


@dataclass
class RunMeta:
    camera: str
    feed_id: str
    anchor: float | None = None  # wall-clock epoch of media time 0


def meta_path(cam_dir: Path, run_id: str) -> Path:
    return cam_dir / f"{run_id}.json"


def meta_tmp_path(cam_dir: Path, run_id: str) -> Path:
    """What a kill during write_meta() leaves behind (recovery and `check --repair` remove it)."""
    return cam_dir / f"{run_id}.json.tmp"


def write_meta(cam_dir: Path, run_id: str, meta: RunMeta) -> None:
    """Atomic and durable: a crash leaves the old or the new file, never half of one (maybe a .json.tmp beside)."""
    path = meta_path(cam_dir, run_id)
    tmp = meta_tmp_path(cam_dir, run_id)
    data = json.dumps({"camera": meta.camera, "feedId": meta.feed_id, "anchor": meta.anchor})
    with tmp.open("w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_meta(cam_dir: Path, run_id: str) -> RunMeta | None:
    return read_meta_file(meta_path(cam_dir, run_id))


def read_meta_file(path: Path) -> RunMeta | None:
    """A run's metadata, or None when the file is missing or holds anything but what write_meta() writes (bytes a
    crash left are read here: never raises)."""
    try:
        return parse_meta(path.read_bytes())
    except OSError:
        return None


def parse_meta(raw: bytes) -> RunMeta | None:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    camera, feed, anchor = data.get("camera"), data.get("feedId"), data.get("anchor")
    if not isinstance(camera, str) or not isinstance(feed, str) or not camera or not feed:
        return None
    if anchor is not None and (isinstance(anchor, bool) or not isinstance(anchor, (int, float))
                               or not math.isfinite(anchor) or not 0 <= anchor < 1e11):
        anchor = None  # a nonsense anchor is no anchor: the file's own time is used instead
    return RunMeta(camera, feed, float(anchor) if anchor is not None else None)


def fsync_dir(path: Path | str) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
