"""Watches ffmpeg's segment lists in the staging folder (watchdog): ffmpeg appends `name,start,end` to
`.lists/{camera}/{run}.csv` only after the segment file is closed, so each new line is an exact "segment
finished" signal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from cctv_daemon.core.clock import Clock
from cctv_daemon.segments import staging
from cctv_daemon.segments.timeline import Observed

log = structlog.get_logger("cctv_daemon.watcher")
WAKE_FILE = ".stop"  # touched in the lists folder to wake the emitter thread at stop (not a .csv: ignored)


@dataclass(frozen=True)
class StagedSegment:
    camera: str
    run_id: str
    path: Path  # the closed segment file in staging
    start_s: float  # media seconds since the run's start
    end_s: float
    # When the daemon saw the list line (its wall time is the segment's end); None when read late (recovery).
    seen: Observed | None = None


class _ListReader:
    def __init__(self, path: Path, segment_dir: Path) -> None:
        self.path = path
        self.segment_dir = segment_dir
        self.offset = 0
        self.seen: set[str] = set()

    def read_new(self, seen: Observed | None = None) -> list[StagedSegment]:
        """New complete lines; only the last one is stamped `seen` (earlier ones were read late)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for raw in data[: end + 1].decode("utf-8", "replace").splitlines():
            parts = raw.strip().rsplit(",", 2)
            if len(parts) != 3:
                continue
            name = Path(parts[0].strip('"')).name
            if name in self.seen:
                continue
            try:
                start, end_s = float(parts[1]), float(parts[2])
            except ValueError:
                log.warning("bad_segment_list_line", list=str(self.path), line=raw)
                continue
            self.seen.add(name)
            out.append(
                StagedSegment(self.segment_dir.name, self.path.stem, self.segment_dir / name, start, end_s)
            )
        if out and seen is not None:
            last = out[-1]
            out[-1] = StagedSegment(last.camera, last.run_id, last.path, last.start_s, last.end_s, seen)
        return out


class SegmentWatcher:
    def __init__(self, staging_root: Path, on_segment: Callable[[StagedSegment], None],
                 clock: Clock | None = None) -> None:
        self.clock = clock
        self.root = staging_root
        self.lists = staging.lists_root(staging_root)
        self.on_segment = on_segment
        self._readers: dict[Path, _ListReader] = {}
        self._lock = threading.Lock()
        self._observer: Any = None

    def start(self) -> None:
        self.lists.mkdir(parents=True, exist_ok=True)
        handler = _Handler(self)
        self._observer = Observer()
        # Only the lists: the segments' folders see a write per frame, which would wake this thread for nothing.
        self._observer.schedule(handler, str(self.lists), recursive=True)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        """Stop without watchdog's stop race: Observer.stop() drops each emitter's inotify group while the
        emitter thread may still be reading an event, and watchdog then logs "InotifyEmitter.queue_events()
        called when the thread is inactive" at error level. So first let every emitter leave its loop on its
        own (stop flag, then one wake-up event so a blocked read returns), and only then stop the observer.
        Events dropped here are not lost: shutdown reads every list (poll_all) before stopping the watcher."""
        observer = self._observer
        if observer is None:
            return
        self._observer = None
        emitters = list(observer.emitters)
        for emitter in emitters:
            emitter.stopped_event.set()
        wake = self.lists / WAKE_FILE
        try:
            wake.touch()
            wake.unlink()
        except OSError:
            pass  # lists folder gone: the emitters' reads return on their own (IN_IGNORED) or are dropped
        for emitter in emitters:
            emitter.join(2)
        observer.stop()
        observer.join(5)

    def poll(self, list_path: Path, stamp: bool = True) -> None:
        """Read any new complete lines of one list (called on watchdog events; idempotent). `stamp`: the line
        was just written, so now is the segment's end (not so for the safety-net poll)."""
        with self._lock:
            reader = self._readers.get(list_path)
            if reader is None:
                reader = self._readers[list_path] = _ListReader(list_path, self.root / list_path.parent.name)
            seen = Observed(self.clock.time(), self.clock.monotonic()) if stamp and self.clock else None
            new = reader.read_new(seen)
        for seg in new:
            self.on_segment(seg)

    def poll_all(self) -> None:
        """Read every list: at shutdown after ffmpeg exited, and as a periodic safety net."""
        for list_path in sorted(self.lists.glob("*/*.csv")):
            self.poll(list_path, stamp=False)

    def forget(self, list_path: Path) -> None:
        with self._lock:
            self._readers.pop(list_path, None)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: SegmentWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in ("modified", "created", "closed"):
            return
        path = Path(str(event.src_path))
        if path.suffix == ".csv":
            self.watcher.poll(path)
