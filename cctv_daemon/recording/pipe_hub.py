"""One thread reads the stdout and stderr of every ffmpeg (a selector over all their pipes), instead of two
threads per ffmpeg.

Each ffmpeg writes a `-progress` block a second on stdout and a log line now and then on stderr; with two threads
per ffmpeg, each block woke its own thread (a third of the daemon's CPU at 16 cameras, docs/benchmarks.md). Here
one thread waits on all pipes and, after handling what was ready, waits PIPE_COALESCE_S before it reads the
frequent streams again, so that the progress blocks and log lines of many cameras are read in one wake-up: at most
1/PIPE_COALESCE_S such wake-ups a second whatever the number of cameras. A progress block is therefore up to that
late; FfmpegProcess dates its advance back by that much, so a stall is never detected late. PIPE_COALESCE_S is the
default window; a stream added with its own `window` (FfmpegProcess: window_for(its camera's stallTimeout), 1 s at
the default 10 s) lets the hub wait longer: the hub waits the smallest window of the streams it reads, chosen only
at the start of each wait, so `coalesce_s` is always the wait the data just read may have sat through (ffmpeg's
advance is dated back by it: never late; at most that much early, which window_for bounds to stallTimeout/8 once
it exceeds PIPE_COALESCE_S). Streams added as
`urgent` are read at once, also during that wait (FfmpegProcess: both pipes over a run's first seconds, where the
run's anchor is measured). A `demote`d stream is read with the others, but on Linux its END still wakes the hub at
once (epoll reports a pipe's hang-up even with no event asked for), so an ffmpeg's exit is seen at once while its
log lines wait: with the live view each ffmpeg writes two lines a second ("Opening 'live…' for writing"), and
reading them as they came woke this thread ~2 times a second per camera (4x its cost without the live view;
docs/benchmarks.md, sixth pass). Elsewhere a demoted stream stays fully urgent.

The hub owns the streams it was given: it closes each at its end of file (or when discarded), always from its own
thread, so a closed descriptor's number can never be reused under it. Windows cannot select() on pipes: there
each stream gets a thread of its own (the same callbacks)."""

from __future__ import annotations

import os
import select
import selectors
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import structlog

from cctv_daemon.core import constants as c

log = structlog.get_logger("cctv_daemon.pipes")

OnData = Callable[[bytes], None]  # a chunk of bytes; b"" once, at end of file (the stream is closed then)
READ_CHUNK = 65536
_Key = tuple[IO[bytes], OnData]
_EPOLL = hasattr(select, "epoll")


def window_for(stall_timeout_s: float) -> float:
    """The longest coalescing window a camera with this stallTimeout allows: stallTimeout/8 (a stall detected at
    most that much early, never late), within [PIPE_COALESCE_S, PIPE_WINDOW_MAX_S]."""
    return min(c.PIPE_WINDOW_MAX_S, max(c.PIPE_COALESCE_S, stall_timeout_s / c.PIPE_WINDOW_STALL_FRACTION))


class _UrgentSet:
    """The streams read during the coalescing wait: each wakes the hub on data (`read`) or, on Linux, only at its
    end (`end_only`: an epoll entry with an empty event mask, which still reports EPOLLHUP/EPOLLERR)."""

    def __init__(self) -> None:
        self._data: dict[int, _Key | None] = {}
        self._ep: Any = select.epoll() if _EPOLL else None
        self._sel: selectors.BaseSelector | None = None if _EPOLL else selectors.DefaultSelector()

    def register(self, fd: int, data: _Key | None, end_only: bool = False) -> None:
        if fd in self._data:  # a stale entry (a stream closed behind the hub's back, its number reused), or a demotion
            self.unregister(fd)
        if self._ep is not None:
            self._ep.register(fd, 0 if end_only else select.EPOLLIN)
        else:
            assert self._sel is not None
            self._sel.register(fd, selectors.EVENT_READ, None)
        self._data[fd] = data

    def unregister(self, fd: int) -> None:
        if self._data.pop(fd, _MISSING) is _MISSING:
            return
        try:
            if self._ep is not None:
                self._ep.unregister(fd)
            else:
                assert self._sel is not None
                self._sel.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass

    def select(self, timeout: float) -> list[tuple[int, _Key | None]]:
        if self._ep is not None:
            try:
                ready = [fd for fd, _ in self._ep.poll(timeout)]
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
                ready = []
        else:
            assert self._sel is not None
            ready = [key.fd for key, _ in self._sel.select(timeout)]
        return [(fd, self._data[fd]) for fd in ready if fd in self._data]


_MISSING: Any = object()


class PipeHub:
    def __init__(self, coalesce_s: float = c.PIPE_COALESCE_S) -> None:
        self.default_window = coalesce_s  # the window of a stream added without its own
        self.coalesce_s = coalesce_s  # the window of the hub's current (or last) wait: see the module's docstring
        self._windows: dict[int, float] = {}  # by descriptor: the window each stream read allows (hub's thread)
        self._lock = threading.Lock()
        self._adds: list[tuple[IO[bytes], OnData, bool, float | None]] = []
        self._drops: list[IO[bytes]] = []
        self._demotes: list[IO[bytes]] = []
        self._thread: threading.Thread | None = None
        self._all: selectors.BaseSelector | None = None  # every stream
        self._urgent: _UrgentSet | None = None  # the urgent ones and the demoted ones' ends: the coalescing wait
        self._wake_r = self._wake_w = -1
        self.wakeups = 0  # select() returns with data: what the coalescing saves is visible in tests and benches

    def add(self, stream: IO[bytes], on_data: OnData, urgent: bool = False, window: float | None = None) -> None:
        """Read `stream` from now on (any thread); on_data is called on the hub's thread. `urgent`: read at
        once (else at most every coalesce_s). `window`: the longest wait this stream allows (default_window if
        None); the hub waits the smallest of its streams'."""
        if os.name == "nt":  # pragma: no cover - no select() on Windows pipes
            threading.Thread(target=_read_blocking, args=(stream, on_data), daemon=True).start()
            return
        with self._lock:
            if self._thread is None:
                self._start()
            self._adds.append((stream, on_data, urgent, window))
        self._wake()

    def discard(self, stream: IO[bytes]) -> None:
        """Stop reading `stream` and close it (its on_data is not called again); any thread."""
        if os.name == "nt":  # pragma: no cover
            _close(stream)
            return
        with self._lock:
            self._drops.append(stream)
        self._wake()

    def demote(self, stream: IO[bytes]) -> None:
        """From now on read `stream` at most every coalesce_s (it was added urgent); its end is still seen at once
        (Linux; elsewhere it stays urgent); any thread."""
        if os.name == "nt":  # pragma: no cover
            return
        with self._lock:
            self._demotes.append(stream)
        self._wake()

    # -- the hub's thread -----------------------------------------------------------------------------
    def _start(self) -> None:
        self._all = selectors.DefaultSelector()
        self._urgent = _UrgentSet()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._all.register(self._wake_r, selectors.EVENT_READ, None)
        self._urgent.register(self._wake_r, None)
        self._thread = threading.Thread(target=self._run, name="ffmpeg-pipes", daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # full: already woken

    def _requests(self) -> None:
        assert self._all is not None and self._urgent is not None
        with self._lock:
            adds, self._adds = self._adds, []
            drops, self._drops = self._drops, []
            demotes, self._demotes = self._demotes, []
        for stream in drops:
            self._forget(stream)
        for stream, on_data, urgent, window in adds:
            if stream.closed:
                _deliver(on_data, b"")
                continue
            fd = stream.fileno()
            try:
                self._all.register(fd, selectors.EVENT_READ, (stream, on_data))
            except KeyError:  # a stale entry: its stream was closed behind the hub's back, the number reused
                self._all.unregister(fd)
                self._all.register(fd, selectors.EVENT_READ, (stream, on_data))
            self._windows[fd] = self.default_window if window is None else window
            if urgent:
                self._urgent.register(fd, (stream, on_data))
        for stream in demotes:  # after the adds: a stream added and demoted in one batch ends up demoted
            if not stream.closed:
                fd = stream.fileno()
                key = self._urgent_key(fd, stream)
                if key is not None:
                    self._urgent.register(fd, key, end_only=_EPOLL)

    def _urgent_key(self, fd: int, stream: IO[bytes]) -> _Key | None:
        assert self._all is not None
        try:
            key: _Key = self._all.get_key(fd).data
        except KeyError:
            return None
        return key if key[0] is stream else None

    def _forget(self, stream: IO[bytes]) -> None:
        if not stream.closed:
            fd = stream.fileno()
            self._windows.pop(fd, None)
            if self._urgent is not None:
                self._urgent.unregister(fd)
            try:
                if self._all is not None:
                    self._all.unregister(fd)
            except (KeyError, ValueError):
                pass
        _close(stream)

    def _handle(self, ready: list[tuple[int, _Key | None]]) -> bool:
        """Read what is ready; True when a stream reached its end."""
        ended = False
        for fd, data in ready:
            if data is None:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except OSError:
                    pass
                self._requests()
                continue
            stream, on_data = data
            if stream.closed:
                continue  # forgotten earlier in this same batch
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                self._forget(stream)
                ended = True
            _deliver(on_data, chunk)
        return ended

    def _run(self) -> None:
        assert self._all is not None and self._urgent is not None
        while True:
            self._requests()
            self._handle([(key.fd, key.data) for key, _ in self._all.select()])
            self.wakeups += 1
            # The window is chosen here only: until the next wait, coalesce_s is the wait just done (a stale entry
            # of a stream closed behind the hub's back can only make it shorter).
            self.coalesce_s = min(self._windows.values(), default=self.default_window)
            deadline = time.monotonic() + self.coalesce_s
            while (left := deadline - time.monotonic()) > 0:
                ready = self._urgent.select(left)
                if any(data is None for _, data in ready):
                    # Requests first (the wake pipe), then look again: a stream demoted by them must not be read
                    # in this same batch for the data that happened to arrive with the wake-up.
                    self._handle([(fd, data) for fd, data in ready if data is None])
                    ready = self._urgent.select(0)
                if ready and self._handle(ready):
                    break  # stderr closed: its ffmpeg exited, so read its stdout's end now (exits are never late)


def _deliver(on_data: OnData, chunk: bytes) -> None:
    try:
        on_data(chunk)
    except Exception:  # one broken callback must not stop the reading of every other ffmpeg
        log.exception("pipe_callback_failed")


def _close(stream: IO[bytes]) -> None:
    try:
        stream.close()
    except OSError:
        pass


def _read_blocking(stream: IO[bytes], on_data: OnData) -> None:  # pragma: no cover - Windows
    fd = stream.fileno()
    while True:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except OSError:
            chunk = b""
        if not chunk:
            _close(stream)
            _deliver(on_data, b"")
            return
        _deliver(on_data, chunk)


_shared: PipeHub | None = None
_shared_lock = threading.Lock()


def shared_hub() -> PipeHub:
    """The process's hub (one thread for every ffmpeg of the daemon)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = PipeHub()
        return _shared
