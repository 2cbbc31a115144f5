"""Stable opaque segment ids: never a path. An id encodes the camera and the segment's start and end
(milliseconds), so it survives catalog rebuilds; the row is found through the catalog's (camera, start) index."""

from __future__ import annotations

import base64
import re

from cctv_daemon.catalog.store import STATES as ALL_STATES
from cctv_daemon.catalog.store import Catalog, SegmentRow

_ID = re.compile(r"[A-Za-z0-9_-]{8,200}")
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def segment_id(row: SegmentRow) -> str:
    raw = f"{row.camera}|{round(row.start * 1000)}|{round(row.end * 1000)}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse(seg_id: str) -> tuple[str, int, int] | None:
    if not _ID.fullmatch(seg_id):
        return None
    try:
        camera, start, end = base64.urlsafe_b64decode(seg_id + "=" * (-len(seg_id) % 4)).decode().split("|")
        parsed = (camera, int(start), int(end))
    except (ValueError, UnicodeError):
        return None
    return parsed if _NAME.fullmatch(camera) else None


def find(catalog: Catalog, seg_id: str, states: tuple[str, ...] = ALL_STATES) -> SegmentRow | None:
    parsed = parse(seg_id)
    if parsed is None:
        return None
    camera, start_ms, end_ms = parsed
    paths = catalog.paths_matching(camera, ((start_ms - 1) / 1000, (start_ms + 1) / 1000),
                                   ((end_ms - 1) / 1000, (end_ms + 1) / 1000))
    for path in paths:
        row = catalog.get(str(path))
        if row is not None and row.state in states:
            return row
    return None


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))
