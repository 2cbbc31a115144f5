"""A watchdog observer for the segment lists' folder that takes the list renames the short way (Linux; None
elsewhere, or when the installed watchdog lacks what is used here: the plain observer is used then).

ffmpeg's segment muxer writes `{run}.csv.tmp` and renames it over `{run}.csv` after each segment. Through watchdog's
own inotify emitter, filtered to renames, that was three inotify events per segment (IN_CREATE of the temporary file,
which a recursive watch always asks for, IN_MOVED_FROM and IN_MOVED_TO), each a Python call chain in watchdog's
reading thread, then its move grouper (a DelayedQueue that holds IN_MOVED_FROM up to 0.5 s for its IN_MOVED_TO),
its emitter thread (event objects, the filter, the observer's queue) and its observer thread (dispatch to the
handler): three thread hand-offs per segment, ~0.8 ms of CPU per rename in all (bench/watcher_cpu.py).

Here inotify is asked for IN_MOVED_TO (not IN_MOVED_FROM), IN_CREATE and IN_DELETE_SELF. In watchdog's reading
thread (InotifyFD), the watch group sees each event first: a list renamed into place (IN_MOVED_TO of a `*.csv`
file) is handed to `on_list` right there, and a file's creation (the temporary list) is dropped. Everything else
(a new camera's folder: watchdog watches it and reports DirCreatedEvent; the stop wake-up file; a folder deleted)
takes watchdog's usual way to the observer's handler. So watchdog still reads inotify, parses its events and keeps
the recursive watches (new folders, deleted ones, queue overflows); only the hand-off of a rename skips its two
queues and two threads, and nothing waits in the move grouper.

The reading thread's loop is watchdog's (InotifyFD.run: read the buffer, then each event in order) with one short
cut: an event that is exactly IN_MOVED_TO of a `*.csv` name goes from the parsed buffer to the watch group by its
watch descriptor and name, without the InotifyEvent object, InotifyFD.handle_event's lock and callback list and the
event's property look-ups (docs/benchmarks.md, ninth pass); every other event, and a rename the group does not take
(a watch it does not know, or inactive), is built and handled exactly as watchdog does."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

OnList = Callable[[bytes], None]  # the full path of a list just renamed into place; called on watchdog's thread
ListsObserver: Any = None
WAKE_NAME = b".stop"  # watcher.WAKE_FILE: its creation must reach the emitter (it wakes it at stop)

if sys.platform == "linux":
    try:
        from watchdog.observers.api import BaseObserver
        from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
        from watchdog.observers.inotify_c import (
            DEFAULT_EVENT_BUFFER_SIZE,
            InotifyConstants,
            InotifyEvent,
            InotifyFD,
            Mask,
            WatchDescriptor,
        )
    except ImportError:  # pragma: no cover - a watchdog without these: the plain observer is used
        pass
    else:
        _MASK = Mask(InotifyConstants.IN_MOVED_TO | InotifyConstants.IN_CREATE | InotifyConstants.IN_DELETE_SELF)
        # A camera's folder (below the watched root) holds only its lists: no IN_CREATE asked there, so the
        # temporary list's creation is not even queued by the kernel (the root keeps it: new camera folders).
        _SUB_MASK = Mask(InotifyConstants.IN_MOVED_TO | InotifyConstants.IN_DELETE_SELF
                         | InotifyConstants.IN_DONT_FOLLOW)

        _MOVED_TO = int(InotifyConstants.IN_MOVED_TO)
        _OVERFLOW = int(InotifyConstants.IN_Q_OVERFLOW)

        class _ListsWatchGroup(InotifyWatchGroup):
            on_list: OnList | None = None  # set right after construction; until then events go watchdog's way

            def on_event(self, event: InotifyEvent) -> None:
                if not event.is_directory and self.on_list is not None:
                    if event.is_moved_to and event.name.endswith(b".csv"):
                        self.moved_list(event.wd, event.name)
                        return
                    if event.is_create and event.name != WAKE_NAME:
                        return  # a temporary list being created: only its rename into place matters
                super().on_event(event)

            def moved_list(self, wd: WatchDescriptor, name: bytes) -> bool:
                """A `*.csv` renamed into the folder of watch `wd`: handed to on_list. False (nothing done) when
                this group has no such watch or is not active (or on_list is not set yet)."""
                on_list = self.on_list
                if on_list is None:
                    return False
                with self._lock:
                    folder = self._active_callbacks_by_watch.get(wd) if self.is_active else None
                if folder is None:
                    return False
                on_list(os.path.join(folder, name))
                return True

            def _add_callback(self, path: bytes) -> None:  # called with self._lock held (watchdog's)
                if path == self.path:
                    super()._add_callback(path)
                    return
                mask, self.event_mask = self.event_mask, _SUB_MASK
                try:
                    super()._add_callback(path)
                finally:
                    self.event_mask = mask

        class _ListsInotifyFD(InotifyFD):
            """watchdog's inotify reader with the short cut for list renames described in the module's text (its
            class keeps watchdog's name: the thread is told apart by it, bench/threads.py and tests)."""

            moved_list: Callable[[WatchDescriptor, bytes], bool] | None = None  # the watch group's, set by its emitter

            def run(self) -> None:
                parse = InotifyFD._parse_event_buffer
                while self.should_keep_running():
                    for wd, mask, cookie, name in parse(self._read_event_buffer(DEFAULT_EVENT_BUFFER_SIZE)):
                        if mask == _MOVED_TO and name.endswith(b".csv"):
                            moved = self.moved_list
                            if moved is not None and moved(wd, name):
                                continue
                        if wd != -1 or mask & _OVERFLOW:  # as InotifyFD.read_events: the other global events dropped
                            self.handle_event(InotifyEvent(wd, mask, cookie, name))

        _ListsInotifyFD.__name__ = _ListsInotifyFD.__qualname__ = "InotifyFD"

        class _ListsEmitter(InotifyEmitter):
            def __init__(self, *args: Any, on_list: OnList, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._on_list = on_list

            def get_event_mask_from_filter(self) -> Mask:
                return _MASK

            def on_thread_start(self) -> None:
                group = _ListsWatchGroup(
                    self._inotify_fd,
                    os.fsencode(self.watch.path),
                    is_recursive=self.watch.is_recursive,
                    event_mask=_MASK,
                    follow_symlink=self.watch.follow_symlink,
                )
                group.on_list = self._on_list
                self._inotify = group
                if isinstance(self._inotify_fd, _ListsInotifyFD):
                    self._inotify_fd.moved_list = group.moved_list

        class _ListsObserver(BaseObserver):
            """watchdog's InotifyObserver with the emitter above (one inotify reading thread, as there)."""

            def __init__(self, on_list: OnList) -> None:
                self._inotify_fd = _ListsInotifyFD()
                self._inotify_fd.start()
                super().__init__(_ListsEmitter, inotify_fd=self._inotify_fd, on_list=on_list)

            def on_thread_stop(self) -> None:
                super().on_thread_stop()
                self._inotify_fd.stop()
                self._inotify_fd.join()

        ListsObserver = _ListsObserver  # tests/unit/test_watcher.py checks it is in use and what it reports
