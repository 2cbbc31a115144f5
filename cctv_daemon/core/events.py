"""The "segment finished" event and the bus other components (catalog, uploader, pruner) subscribe to."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("cctv_daemon.events")


@dataclass(frozen=True)
class FinishedSegment:
    camera: str
    feed_id: str
    path: Path  # final place under savePath
    start: float  # UTC epoch seconds, media timeline anchored to the wall clock
    end: float
    size: int
    run_id: str
    recovered: bool = False  # finalized by startup recovery after a crash

    @property
    def duration(self) -> float:
        return self.end - self.start


Subscriber = Callable[[FinishedSegment], None]


class SegmentBus:
    """Delivers each finished segment to every subscriber, in subscription order; one failing subscriber
    is logged and does not keep the segment from the others."""

    def __init__(self) -> None:
        self._subs: list[tuple[str, Subscriber]] = []
        self._lock = threading.Lock()

    def subscribe(self, name: str, fn: Subscriber) -> None:
        with self._lock:
            self._subs.append((name, fn))

    def publish(self, seg: FinishedSegment) -> None:
        with self._lock:
            subs = list(self._subs)
        for name, fn in subs:
            try:
                fn(seg)
            except Exception:
                log.exception("subscriber_failed", subscriber=name, camera=seg.camera, path=str(seg.path))
