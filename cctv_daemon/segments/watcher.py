"""Watches ffmpeg's segment lists in the staging folder (watchdog): ffmpeg writes `name,start,end` to
`.lists/{camera}/{run}.csv` only after the segment file is complete, so each new entry is an exact "segment
finished" signal. The list holds the run's last staging.LIST_SIZE entries (rewritten and renamed into place)."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import (
    DirCreatedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from cctv_daemon.core.clock import Clock
from cctv_daemon.segments import staging
from cctv_daemon.segments.lists_observer import WAKE_NAME, ListsObserver
from cctv_daemon.segments.timeline import Observed

log = structlog.get_logger("cctv_daemon.watcher")
WAKE_FILE = WAKE_NAME.decode()  # ".stop": touched in the lists folder to wake the emitter thread at stop


@dataclass(frozen=True)
class StagedSegment:
    camera: str
    run_id: str
    file: str  # the closed segment file in staging, a plain str (a Path given here is kept as its str): see path
    start_s: float  # media seconds since the run's start
    end_s: float
    # When the daemon saw the list line (its wall time is the segment's end); None when read late (recovery).
    seen: Observed | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.file, str):
            object.__setattr__(self, "file", os.fspath(self.file))

    @property
    def path(self) -> Path:
        """Built on demand: pathlib interns every part it parses, and a Path made from every new segment name
        churns CPython's interned-string table (its resizes are RSS steps); the hand-off itself uses `file`."""
        return Path(self.file)


class _ListReader:
    """Reads a run's segment list. ffmpeg rewrites the list (its last staging.LIST_SIZE entries) and renames it into
    place after each segment, so every read sees whole lines; what was already handed on is remembered as one
    number, the highest segment index seen, so memory stays flat for the life of a run however long it lasts."""

    def __init__(self, path: Path, segment_dir: Path) -> None:
        self.path = path
        self._path = os.fspath(path)
        self.segment_dir = segment_dir
        self._dir = os.fspath(segment_dir)
        self._prefix = os.path.join(self._dir, "")
        self._camera = segment_dir.name
        self.run_id = path.stem
        self.last_index = -1

    def read_new(self, clock: Clock | None = None) -> list[StagedSegment]:
        """New complete lines. With a clock (the list was just renamed into place), the last one is stamped seen
        now, dated back by how long ago the list was renamed (_lateness; earlier ones were read late).
        One descriptor, no file object: one fstat (the size, and the stamp's mtime: the version read), one pread of
        the list's last TAIL_BYTES (the usual list holds LIST_SIZE lines, a few kB, of which only the last one or two
        are new), and the whole list only when no entry handed on already is among its last TAIL_LINES lines."""
        try:
            fd = os.open(self._path, _READ)
        except _GONE:
            return []
        try:
            st = os.fstat(fd)
            off = max(0, st.st_size - TAIL_BYTES)
            data = _pread(fd, TAIL_BYTES, off)
            seen = None
            if clock is not None:
                late = _lateness(st.st_mtime)
                seen = Observed(clock.time() - late, clock.monotonic() - late)
            out = self._parse(data, seen, partial=off > 0)
            if out is None:  # the tail did not show where the new entries start: the whole list
                os.lseek(fd, 0, os.SEEK_SET)
                out = self._parse(_read_all(fd), seen, partial=False)
        except _GONE:
            return []
        finally:
            os.close(fd)
        return out or []

    def parse(self, data: bytes, seen: Observed | None = None) -> list[StagedSegment]:
        """New segments in (the complete lines of) a whole list's bytes. Never raises: a crash may have left
        anything."""
        return self._parse(data, seen, partial=False) or []

    def _parse(self, data: bytes, seen: Observed | None, partial: bool) -> list[StagedSegment] | None:
        """Only the list's tail is decoded when an entry handed on already is found there (the usual case: one new
        entry after each rename); else the whole list, or None when `data` is only the list's end (`partial`: the
        caller reads the whole list then). The tail starts right after a newline, so its lines are exactly the
        whole list's last lines (splitlines' other separators included; a UTF-8 sequence never holds a newline)."""
        end = data.rfind(b"\n")
        cut = end
        for _ in range(TAIL_LINES):
            cut = data.rfind(b"\n", 0, cut)
            if cut < 0:
                break
        if cut >= 0:
            lines = data[cut + 1 : end + 1].decode("utf-8", "replace").splitlines()
            first_new = self._first_new(lines)
            if first_new < 0:
                if partial:
                    return None
                lines = data[: end + 1].decode("utf-8", "replace").splitlines()
                first_new = max(0, self._first_new(lines))
        else:
            if partial:
                return None
            lines = data[: end + 1].decode("utf-8", "replace").splitlines()
            first_new = max(0, self._first_new(lines))
        out: list[StagedSegment] = []
        new = lines[first_new:]
        final = len(new) - 1
        for i, raw in enumerate(new):
            seg = self._parse_line(raw, seen if i == final else None)  # the list's last line: stamped at once
            if seg is not None:
                out.append(seg)
        if out and seen is not None and out[-1].seen is None:  # the last line was not a segment: the last one is
            last = out[-1]
            out[-1] = StagedSegment(last.camera, last.run_id, last.file, last.start_s, last.end_s, seen)
        return out

    def _first_new(self, lines: list[str]) -> int:
        """The index of the first line after the last one handed on already; -1 if none of them was."""
        for i in range(len(lines) - 1, -1, -1):  # from the end: only the last entry or two are new
            parsed = staging.segment_index(lines[i].strip().rsplit(",", 2)[0].strip('"'))
            if parsed is not None and parsed[0] == self.run_id and parsed[1] <= self.last_index:
                return i + 1
        return -1

    def _parse_line(self, raw: str, seen: Observed | None = None) -> StagedSegment | None:
        parts = raw.strip().rsplit(",", 2)
        if len(parts) != 3:
            return None
        name = parts[0].strip('"')
        parsed = staging.segment_index(name)
        if parsed is None or parsed[0] != self.run_id:
            if raw.strip():
                log.warning("bad_segment_list_line", list=str(self.path), line=raw[:200])
            return None
        index = parsed[1]
        if index <= self.last_index:
            return None  # handed on already (the list repeats its last entries)
        try:
            start, end_s = float(parts[1]), float(parts[2])
        except ValueError:
            start = end_s = math.nan
        if not (math.isfinite(start) and math.isfinite(end_s) and 0 <= start <= end_s < MAX_MEDIA_S):
            log.warning("bad_segment_list_line", list=str(self.path), line=raw[:200])
            return None
        self.last_index = index
        # os.path.join(self._dir, name): `name` is a bare file name (staging's pattern matched it)
        return StagedSegment(self._camera, self.run_id, self._prefix + name, start, end_s, seen)


TAIL_LINES = 4  # a list's last lines decoded first (parse)
TAIL_BYTES = 1024  # what read_new reads first: TAIL_LINES + 1 lines of ~55 bytes, with room for longer ones
_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_GONE = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
MAX_LIST_BYTES = 64 * 1024 * 1024  # a list left by an older version (no size limit) is read whole, up to this
MAX_MEDIA_S = 10 * 366 * 86400.0  # media offsets beyond ten years are garbage


MAX_LATENESS_S = 1.0  # more than this behind the list's own write time is not an event delay: trust the read


def _seek_read(fd: int, n: int, pos: int) -> bytes:
    os.lseek(fd, pos, os.SEEK_SET)
    return os.read(fd, n)


_pread = getattr(os, "pread", _seek_read)  # Windows has no pread


def _read_all(fd: int) -> bytes:
    """The rest of the file from the descriptor's position, up to MAX_LIST_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_LIST_BYTES:
        chunk = os.read(fd, min(1 << 20, MAX_LIST_BYTES - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _lateness(mtime: float) -> float:
    """How long ago ffmpeg renamed the list into place (its mtime, real clock): the time the event took to reach
    us. watchdog holds a rename whose two inotify halves arrive in separate reads for up to 0.5 s (its move-event
    grouper), which made a segment's observed end, and so its name, 0.5 s late under load. Bounded, and 0 when
    the mtime is in the future (a clock step)."""
    age = time.time() - mtime
    return age if 0.0 < age <= MAX_LATENESS_S else 0.0


class SegmentWatcher:
    def __init__(self, staging_root: Path, on_segment: Callable[[StagedSegment], None],
                 clock: Clock | None = None) -> None:
        self.clock = clock
        self.root = staging_root
        self.lists = staging.lists_root(staging_root)
        self.on_segment = on_segment
        self._readers: dict[str, _ListReader] = {}  # by the list's path as a str (no Path made per event)
        self._lock = threading.Lock()
        self._observer: Any = None
        self.fast_path = ListsObserver is not None  # Linux: see start (bench/watcher_cpu.py toggles it)

    def start(self) -> None:
        self.lists.mkdir(parents=True, exist_ok=True)
        handler = _Handler(self)
        # Only the lists: the segments' folders see a write per frame, which would wake this thread for nothing.
        # Only renames: ffmpeg writes {run}.csv.tmp and renames it over the list; its create/open/modify/close events
        # (4 more per segment, each a Python call chain in watchdog's threads) are not even asked of inotify.
        # (docs/benchmarks.md: watchdog's threads 0.24 -> 0.15 % of a core at 16 cameras with 10 s segments)
        # Linux only (inotify, measured); elsewhere every event, as before. The safety-net poll catches any miss.
        # A camera's lists folder made after start: its creation too, so a list renamed into it before watchdog
        # watched it is read at once (the inotify mask is the same: a recursive watch always asks for IN_CREATE).
        # ListsObserver (Linux) goes further: inotify is asked for the rename's arriving half only (IN_MOVED_TO), the
        # temporary file's creation is dropped, and a list renamed into place is read right in watchdog's inotify
        # thread (_on_list) instead of through its two queues and two more threads (segments/lists_observer.py;
        # docs/benchmarks.md, sixth pass). New camera folders still come through the handler (DirCreatedEvent).
        if self.fast_path and ListsObserver is not None:
            self._observer = ListsObserver(self._on_list)
            only: list[type[FileSystemEvent]] | None = [FileCreatedEvent, DirCreatedEvent]
        else:
            self._observer = Observer()
            only = [FileMovedEvent, DirCreatedEvent] if sys.platform == "linux" else None
        self._observer.schedule(handler, str(self.lists), recursive=True, event_filter=only)
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

    def _on_list(self, path: bytes) -> None:
        """A list renamed into place (ListsObserver, on watchdog's inotify thread: an exception must not end it)."""
        try:
            self.poll(os.fsdecode(path))
        except Exception:
            log.exception("segment_list_read_failed", list=os.fsdecode(path))

    def poll(self, list_path: Path | str, stamp: bool = True) -> None:
        """Read any new complete lines of one list (called on watchdog events; idempotent). `stamp`: the line
        was just written, so now is the segment's end (not so for the safety-net poll)."""
        key = os.fspath(list_path)
        with self._lock:
            reader = self._readers.get(key)
            if reader is None:
                path = Path(key)
                reader = self._readers[key] = _ListReader(path, self.root / path.parent.name)
            new = reader.read_new(self.clock if stamp else None)
        for seg in new:
            self.on_segment(seg)

    def poll_all(self) -> None:
        """Read every list: at shutdown after ffmpeg exited, and as a periodic safety net."""
        for list_path in sorted(self.lists.glob("*/*.csv")):
            self.poll(list_path, stamp=False)

    def forget(self, list_path: Path) -> None:
        with self._lock:
            self._readers.pop(os.fspath(list_path), None)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: SegmentWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type == "created":  # a new camera's lists folder: anything renamed in before the watch
                src = event.src_path
                folder = Path(str(src, "utf-8", "replace") if isinstance(src, bytes) else src)
                for path in sorted(folder.glob("*.csv")):
                    self.watcher.poll(path)
            return
        if event.event_type not in ("modified", "created", "closed", "moved"):
            return
        # ffmpeg writes {run}.csv.tmp and renames it over {run}.csv: the rename is the event that matters (with
        # ListsObserver it comes as the list's creation).
        src = event.dest_path if event.event_type == "moved" else event.src_path
        name = str(src, "utf-8", "replace") if isinstance(src, bytes) else src
        if name.endswith(".csv"):
            self.watcher.poll(Path(name))
