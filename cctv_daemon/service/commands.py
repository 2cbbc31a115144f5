"""The command path into the main loop. Any thread (the control socket, later the HTTP API) submits a command and
gets a Reply; the loop runs the handler between ticks (CommandQueue.run_pending) and answers with a result or an
error. Handlers run on the main loop only, so they may touch live objects (cameras, components) freely.

    reply = commands.submit("stop_camera", {"camera": "gate"})
    reply.wait(5)            # -> the handler's result, or raises CommandFailed / CommandTimeout
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

import structlog

log = structlog.get_logger("cctv_daemon.commands")

Args = Mapping[str, Any]
Handler = Callable[[Args], Any]  # returns a JSON-able result; raises CommandError for a refused command


class CommandError(Exception):
    """A command the loop refuses (unknown camera, bad argument, not supported...): the message goes to the caller."""


class CommandFailed(Exception):
    """Raised by Reply.wait(): the command was refused or its handler failed."""


class CommandTimeout(CommandFailed):
    """Raised by Reply.wait(): no answer in time (the loop is busy or stuck)."""


class Reply:
    """A future: set once by the main loop, waited on by the caller."""

    def __init__(self, command: str) -> None:
        self.command = command
        self._done = threading.Event()
        self._result: Any = None
        self._error: str | None = None

    def set_result(self, result: Any) -> None:
        self._result = result
        self._done.set()

    def set_error(self, error: str) -> None:
        self._error = error
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Any:
        if not self._done.wait(timeout):
            raise CommandTimeout(f"{self.command}: no answer from the main loop within {timeout:g} s")
        if self._error is not None:
            raise CommandFailed(self._error)
        return self._result


class CommandQueue:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._queue: queue.SimpleQueue[tuple[str, dict[str, Any], Reply]] = queue.SimpleQueue()
        self._closed: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.on_submit: Callable[[], None] | None = None  # wakes the loop's sleep (the daemon's Waker)
        self.executed = 0

    def register(self, name: str, handler: Handler) -> None:
        """Add (or replace) the handler of a command; e.g. the uploader registers "retry_uploads"."""
        with self._lock:
            self._handlers[name] = handler

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._handlers)

    def submit(self, name: str, args: Args | None = None) -> Reply:
        """Thread-safe. Unknown commands and a closed queue are answered at once."""
        reply = Reply(name)
        with self._lock:
            closed = self._closed
            known = name in self._handlers
            if closed is None and known:
                self._queue.put((name, dict(args or {}), reply))
                self._wake.set()
                if self.on_submit is not None:
                    self.on_submit()
        if closed is not None:
            reply.set_error(closed)
        elif not known:
            reply.set_error(f"{name}: not supported by this daemon (supported: {', '.join(self.names())})")
        return reply

    def call(self, name: str, args: Args | None = None, timeout: float = 10.0) -> Any:
        return self.submit(name, args).wait(timeout)

    def wait(self, timeout: float) -> None:
        """The loop's sleep between ticks: returns early when a command arrives (answers within ms, not a tick)."""
        self._wake.wait(timeout)
        self._wake.clear()

    def run_pending(self, limit: int = 100) -> int:
        """On the main loop: execute up to `limit` queued commands, answering each one."""
        n = 0
        while n < limit:
            try:
                name, args, reply = self._queue.get_nowait()
            except queue.Empty:
                break
            n += 1
            handler = self._handlers.get(name)
            try:
                if handler is None:
                    raise CommandError(f"{name}: not supported")
                reply.set_result(handler(args))
            except CommandError as exc:
                reply.set_error(str(exc))
            except Exception as exc:  # a command must never take the loop down
                log.exception("command_failed", command=name)
                reply.set_error(f"{name} failed: {type(exc).__name__}: {exc}")
            self.executed += 1
        return n

    def close(self, reason: str = "the daemon has stopped") -> None:
        """Refuse new commands and answer every queued one with `reason`."""
        with self._lock:
            self._closed = reason
        while True:
            try:
                _name, _args, reply = self._queue.get_nowait()
            except queue.Empty:
                return
            reply.set_error(reason)
