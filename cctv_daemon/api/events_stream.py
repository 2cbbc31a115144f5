"""Fan-out of bus events to the HTTP API's server-sent event streams. The bus calls publish() on the publisher's
thread (main loop, hand-off worker...): it only converts the event and hands it to each stream's asyncio queue
without blocking; a slow client's full queue drops events for that client (it is told with a `dropped` event)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import threading
from typing import Any

from cctv_daemon.core.events import CameraStateChanged, Event, FinishedSegment, SegmentDeleted, SegmentUploaded

QUEUE_SIZE = 1000
_KIND = {CameraStateChanged: "camera_state", FinishedSegment: "segment_finished", SegmentUploaded: "segment_uploaded",
         SegmentDeleted: "segment_deleted"}


def to_message(event: Event) -> tuple[str, dict[str, Any]]:
    kind = _KIND.get(type(event), type(event).__name__)
    data: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        if f.name in ("path", "file", "rel_path", "key", "run_id"):
            continue  # paths and keys stay inside: segments are named by their opaque id
        data[f.name] = getattr(event, f.name)
    if isinstance(event, (FinishedSegment, SegmentUploaded, SegmentDeleted)):
        from cctv_daemon.api.ids import segment_id
        from cctv_daemon.catalog.store import SegmentRow

        data["id"] = segment_id(SegmentRow("", event.camera, event.feed_id, event.start, event.end, event.size))
    return kind, data


class EventBroker:
    name = "api_events"

    def __init__(self) -> None:
        self._streams: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.published = 0

    def publish(self, event: Event) -> None:
        self.published += 1
        with self._lock:
            streams = list(self._streams.values())
        if not streams:
            return  # nobody listens (the usual case): no message to build for each segment
        kind, data = to_message(event)
        text = f"id: {self.published}\nevent: {kind}\ndata: {json.dumps(data, default=str)}\n\n"
        for loop, q in streams:
            try:
                loop.call_soon_threadsafe(_put, q, text)
            except RuntimeError:
                pass  # its loop has closed

    def open(self) -> tuple[int, asyncio.Queue[str]]:
        q: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        sid = next(self._ids)
        with self._lock:
            self._streams[sid] = (asyncio.get_running_loop(), q)
        return sid, q

    def close(self, sid: int) -> None:
        with self._lock:
            self._streams.pop(sid, None)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._streams)


def _put(q: asyncio.Queue[str], text: str) -> None:
    try:
        q.put_nowait(text)
    except asyncio.QueueFull:
        pass
