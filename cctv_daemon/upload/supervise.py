"""Supervised threads: a loop whose step raises is not a dead thread. The error is logged (one line per change
of error), counted and shown by ``status`` (``failing``), and the step runs again after a backoff; the first
clean step after it logs the recovery. A thread that dies anyway is started again from the main loop's tick."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from cctv_daemon.core.backoff import Backoff
from cctv_daemon.core.redact import redact

log = structlog.get_logger("cctv_daemon.upload")

WORKER_BACKOFF = (0.5, 30.0)  # a worker that failed outside the transfer comes back after this (base, cap)


class SupervisedThreads:
    def __init__(self, cancel: threading.Event) -> None:
        self._cancel = cancel
        self._draining = False  # stopping: draining threads end when they have nothing to do
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._targets: dict[str, Callable[[], None]] = {}
        self._stranded: set[str] = set()  # rows claimed by a step that then failed outside the transfer
        self._failing: dict[str, str] = {}  # thread name -> its last error, while it fails
        self.worker_errors = 0
        self.last_worker_error: str | None = None

    def release_stranded_rows(self, paths: set[str]) -> None:
        """Put rows a failed step held back in the queue (overridden)."""

    def _spawn(self, name: str, step: Callable[[], bool], idle_wait: Callable[[], None], drains: bool) -> None:
        def target() -> None:
            self._supervised(step, idle_wait, drains)

        self._targets[name] = target
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def restart_dead_threads(self) -> None:
        """From the main loop's tick: cheap (no I/O)."""
        if self._draining or self._cancel.is_set():
            return
        for i, t in enumerate(self._threads):
            if not t.is_alive():
                log.error("upload_thread_died", thread=t.name, action="restarted")
                self._threads[i] = threading.Thread(target=self._targets[t.name], name=t.name, daemon=True)
                self._threads[i].start()

    def _supervised(self, step: Callable[[], bool], idle_wait: Callable[[], None], drains: bool) -> None:
        me = threading.current_thread().name
        backoff = Backoff(*WORKER_BACKOFF)
        while not self._cancel.is_set():
            try:
                self._release_stranded()
                did = step()
            except Exception as exc:
                self._step_failed(me, exc)
                self._cancel.wait(backoff.next_delay())
                continue
            if me in self._failing:
                with self._lock:
                    self._failing.pop(me, None)
                log.info("upload_worker_recovered", thread=me, failures=backoff.failures)
            backoff.reset()
            if not did:
                if drains and self._draining:
                    return
                idle_wait()

    def _step_failed(self, me: str, exc: BaseException) -> None:
        message = redact(f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.worker_errors += 1
            self.last_worker_error = message
            changed = self._failing.get(me) != message
            self._failing[me] = message
        if changed:
            log.error("upload_worker_failed", thread=me, error=message, count=self.worker_errors,
                      action="retried with backoff")
        else:
            log.debug("upload_worker_failed_again", thread=me, error=message)

    def _release_stranded(self) -> None:
        with self._lock:
            stranded = set(self._stranded)
        if stranded:
            self.release_stranded_rows(stranded)
            with self._lock:
                self._stranded -= stranded
