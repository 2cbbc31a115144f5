"""The daemon's events and the bus that delivers them: finished segments (catalog, retention, uploader subscribe),
camera state transitions, and (published by their owners) uploads and deletions. A subscriber (the HTTP API's
event stream, metrics) gets every change as it happens and never polls."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import structlog

log = structlog.get_logger("cctv_daemon.events")


@dataclass(frozen=True)
class FinishedSegment:
    """`file` is the final place under savePath as a plain str: pathlib interns every part it parses, so a Path
    built from each new segment name would churn CPython's interned-string table, whose resizes leave RSS steps
    (docs/benchmarks.md, "Memory for the life of a run"). `path` builds the Path on demand (for rare uses)."""

    camera: str
    feed_id: str
    file: str  # final place under savePath (a Path given here is kept as its str)
    start: float  # UTC epoch seconds: wall-clock time its first frame arrived (docs/segment-lifecycle.md)
    end: float  # wall-clock time its last frame ended (the next segment's first keyframe arrived)
    size: int
    run_id: str
    recovered: bool = False  # finalized by startup recovery after a crash
    media_duration: float | None = None  # seconds of media by the camera's own clock (None: unknown)

    def __post_init__(self) -> None:
        if not isinstance(self.file, str):
            object.__setattr__(self, "file", os.fspath(self.file))

    @property
    def path(self) -> Path:
        return Path(self.file)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class CameraStateChanged:
    """A camera's state machine moved (recording/camera.py); published from the main loop."""

    camera: str
    # State values: stopped, starting, recording, backoff, auth_failed, not_found, transport_refused, disk_full,
    # stopping
    old: str
    new: str
    reason: str
    time: float  # wall clock, epoch seconds


@dataclass(frozen=True)
class SegmentUploaded:
    """A segment verified in S3 (size, ETag, sha256): published by the uploader (upload/uploader.py) on its worker
    thread, before any clearAfterUpload deletion of the local file."""

    camera: str
    rel_path: str
    key: str
    time: float
    feed_id: str = ""
    start: float = 0.0  # the catalog row's start and end: with the camera, the segment's opaque API id
    end: float = 0.0
    size: int = 0
    already_there: bool = False  # found verified in the bucket (an earlier run's upload), nothing sent


@dataclass(frozen=True)
class SegmentDeleted:
    """A segment removed from disk and catalog: published by the one deletion path (catalog/deletion.py) for
    retention, clearAfterUpload and API deletions alike."""

    camera: str
    rel_path: str
    reason: str
    time: float
    feed_id: str = ""
    start: float = 0.0
    end: float = 0.0
    size: int = 0
    uploaded: bool = False  # its upload was verified before the deletion
    footage_lost: bool = False  # uploads are configured and it was not uploaded: it now exists nowhere


Event = FinishedSegment | CameraStateChanged | SegmentUploaded | SegmentDeleted
E = TypeVar("E", FinishedSegment, CameraStateChanged, SegmentUploaded, SegmentDeleted)
Subscriber = Callable[[FinishedSegment], None]


class EventBus:
    """Delivers each event to its subscribers in subscription order, on the publisher's thread (finished segments:
    the hand-off worker; camera states: the main loop), so subscribers must be quick. One failing subscriber is
    logged and does not keep the event from the others."""

    def __init__(self) -> None:
        self._subs: list[tuple[str, type[Event] | None, Callable[[Event], None]]] = []
        self._lock = threading.Lock()
        # Per event type: its subscribers in order, built on first publish and dropped on any subscription (a
        # finished segment's publish was a lock, a list and an isinstance per subscriber each time).
        self._by_type: dict[type, tuple[tuple[str, Callable[[Event], None]], ...]] = {}

    def subscribe(self, name: str, fn: Subscriber) -> None:
        """Finished segments only (catalog, retention, uploader...)."""
        self.on(FinishedSegment, name, fn)

    def on(self, kind: type[E], name: str, fn: Callable[[E], None]) -> None:
        with self._lock:
            self._subs.append((name, kind, fn))  # type: ignore[arg-type]  # dispatched by kind below
            self._by_type = {}

    def subscribe_all(self, name: str, fn: Callable[[Event], None]) -> None:
        with self._lock:
            self._subs.append((name, None, fn))
            self._by_type = {}

    def subscribers(self) -> list[str]:
        with self._lock:
            return [name for name, _, _ in self._subs]

    def publish(self, event: Event) -> None:
        subs = self._by_type.get(type(event))
        if subs is None:
            with self._lock:
                subs = tuple((name, fn) for name, kind, fn in self._subs if kind is None or isinstance(event, kind))
                self._by_type[type(event)] = subs
        for name, fn in subs:
            try:
                fn(event)
            except Exception:
                log.exception("subscriber_failed", subscriber=name, event_type=type(event).__name__,
                              camera=getattr(event, "camera", None))


SegmentBus = EventBus  # the name components were written against
