"""The staging folder where ffmpeg writes: {stateDir}/staging/{camera}/{run}_NNNNNN.mp4 and {run}.json (camera,
feed id and the wall-clock anchor of media time 0); the run's segment list, written by ffmpeg, is kept apart in
{stateDir}/staging/.lists/{camera}/{run}.csv so that watching the lists does not wake up on every media write."""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cctv_daemon.core import constants as c

_SEGMENT = re.compile(r"^(?P<run>r\d{8}T\d{6}Z-[0-9a-f]{6})_(?P<index>\d{6})\.mp4$")


def staging_root(state_dir: Path) -> Path:
    return state_dir / c.STAGING_DIRNAME


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


@dataclass
class RunMeta:
    camera: str
    feed_id: str
    anchor: float | None = None  # wall-clock epoch of media time 0


def meta_path(cam_dir: Path, run_id: str) -> Path:
    return cam_dir / f"{run_id}.json"


def write_meta(cam_dir: Path, run_id: str, meta: RunMeta) -> None:
    """Atomic and durable: a crash leaves the old or the new file, never half of one."""
    path = meta_path(cam_dir, run_id)
    tmp = path.with_suffix(".json.tmp")
    data = json.dumps({"camera": meta.camera, "feedId": meta.feed_id, "anchor": meta.anchor})
    with tmp.open("w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_meta(cam_dir: Path, run_id: str) -> RunMeta | None:
    try:
        data = json.loads(meta_path(cam_dir, run_id).read_text(encoding="utf-8"))
        anchor = data.get("anchor")
        return RunMeta(
            str(data["camera"]), str(data["feedId"]), float(anchor) if anchor is not None else None
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
