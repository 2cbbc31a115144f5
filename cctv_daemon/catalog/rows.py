"""What the catalog hands out: segment rows and gaps (plain values, no database in here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

LIVE_STATES = ("complete", "deleting")  # the file exists (or is about to go)
STATES = ("complete", "deleting", "deleted", "missing")
UPLOADED = "uploaded"  # the uploads-table state of a verified off-site copy (upload/queue.py)
GAP_TOLERANCE_S = 1.5  # segments that touch within this are contiguous


def is_uploaded(upload_state: str | None) -> bool:
    """The one question others ask of upload state: is a verified copy off-site? (None: no uploads row.)"""
    return upload_state == UPLOADED


class SegmentRow(NamedTuple):  # a NamedTuple: 100 000 of them are built in well under a second
    path: str  # relative, POSIX
    camera: str
    feed_id: str
    start: float
    end: float
    size: int
    state: str = "complete"
    upload_state: str | None = None  # from the uploads table
    media_duration: float | None = None  # seconds of media by the camera's clock (None: unknown, e.g. rebuilt)
    node_id: str = ""  # the fleet node that holds the file ("" when not known yet: the catalog fills it in)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Gap:
    camera: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def with_gaps(rows: list[SegmentRow], start: float | None = None, end: float | None = None,
              tolerance: float = GAP_TOLERANCE_S) -> list[Gap]:
    """Missing coverage between segments of each camera (rows ordered by camera, start); with a range, also
    before the first and after the last segment inside it. Touching within `tolerance` is not a gap."""
    gaps: list[Gap] = []
    by_cam: dict[str, list[SegmentRow]] = {}
    for r in rows:
        by_cam.setdefault(r.camera, []).append(r)
    for cam, segs in by_cam.items():
        covered = start if start is not None else segs[0].start
        for s in segs:
            if s.start - covered > tolerance:
                gaps.append(Gap(cam, covered, s.start))
            covered = max(covered, s.end)
        if end is not None and end - covered > tolerance:
            gaps.append(Gap(cam, covered, end))
    return gaps
