"""Names and places of finished segments: {savePath}/{camera}/{YYYY-MM-DD}/{camera}_{feed}_{start}_{end}.mp4."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path, PurePosixPath

from cctv_daemon.core import constants as c

_STAMP = r"\d{8}T\d{6}Z"
_NAME = re.compile(rf"^(?P<prefix>.+)_(?P<start>{_STAMP})_(?P<end>{_STAMP})(?P<dup>~\d+)?\.mp4$")


def stamp(epoch: float) -> str:
    """UTC, whole seconds (rounded, so two segments that touch get the same stamp at the join)."""
    return _stamp(round(epoch))


@lru_cache(maxsize=256)  # a segment's start is its predecessor's end: each stamp is asked for 2-4 times
def _stamp(second: int) -> str:
    return datetime.fromtimestamp(second, tz=timezone.utc).strftime(c.TIME_FORMAT)


def parse_stamp(text: str) -> float:
    return datetime.strptime(text, c.TIME_FORMAT).replace(tzinfo=timezone.utc).timestamp()


def date_dir(epoch: float) -> str:
    return _date_dir(round(epoch) // 86400)  # UTC days: no leap seconds in epoch time


@lru_cache(maxsize=16)
def _date_dir(day: int) -> str:
    return datetime.fromtimestamp(day * 86400, tz=timezone.utc).strftime(c.DATE_DIR_FORMAT)


def file_name(camera: str, feed_id: str, start: float, end: float) -> str:
    return f"{camera}_{feed_id}_{stamp(start)}_{stamp(end)}{c.SEGMENT_EXT}"


def final_path(save_path: Path, camera: str, feed_id: str, start: float, end: float) -> Path:
    return save_path / camera / date_dir(start) / file_name(camera, feed_id, start, end)


def final_file(save_dir: str, camera: str, feed_id: str, start: float, end: float) -> str:
    """final_path as a plain str (the hand-off's: pathlib would intern every new segment name)."""
    return os.path.join(save_dir, camera, date_dir(start), file_name(camera, feed_id, start, end))


def rel_file(save_path: Path, file: str) -> str:
    """`file` relative to savePath with POSIX separators, as the catalog and the upload queue name it: the result of
    PurePosixPath(*Path(file).relative_to(save_path).parts).as_posix(), which that is also the fallback, but without
    a Path per segment on the hand-off (pathlib interns every part it parses; see core/events.py)."""
    root = os.path.join(os.fspath(save_path), "")
    rel = file[len(root):] if file.startswith(root) else ""
    if not rel or any(p in ("", ".") for p in rel.split(os.sep)) or (os.altsep and os.altsep in rel):
        return PurePosixPath(*Path(file).relative_to(save_path).parts).as_posix()
    return rel.replace(os.sep, "/")


def abs_file(save_path: Path, rel: str) -> str:
    """A catalogued (POSIX, relative) path under savePath as a plain str: save_path.joinpath(*PurePosixPath(rel)
    .parts) (also the fallback), without interning the segment's name (see rel_file)."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".") for p in parts):
        return os.fspath(save_path.joinpath(*PurePosixPath(rel).parts))
    return os.path.join(os.fspath(save_path), *parts)


@dataclass(frozen=True)
class ParsedName:
    camera: str
    feed_id: str
    start: float
    end: float


def parse_file_name(name: str, camera: str) -> ParsedName | None:
    """Parse a segment file name; the camera comes from its folder (names may contain '_')."""
    m = _NAME.match(name)
    if not m or not m["prefix"].startswith(camera + "_"):
        return None
    feed = m["prefix"][len(camera) + 1 :]
    if not feed:
        return None
    return ParsedName(camera, feed, parse_stamp(m["start"]), parse_stamp(m["end"]))
