"""The daemon's one loop: starts a Camera per enabled camera, hands finished segments on, and stops
everything gracefully. Signal handlers only record the signal; the loop acts on it. A second stop signal
means exit now."""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Protocol

import structlog

from cctv_daemon.catalog import services as catalog_wiring
from cctv_daemon.config.model import CameraConfig, Config
from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import Clock, SystemClock
from cctv_daemon.core.events import FinishedSegment, SegmentBus
from cctv_daemon.core.waker import Waker
from cctv_daemon.recording import orphans
from cctv_daemon.recording.camera import Camera, State
from cctv_daemon.segments import staging
from cctv_daemon.segments.finisher import SegmentFinisher
from cctv_daemon.segments.watcher import SegmentWatcher, StagedSegment

log = structlog.get_logger("cctv_daemon.supervisor")

SAFETY_POLL_S = 10.0
STALL_MARGIN_S = 0.01  # a stall is `now - last_advance > stallTimeout`: wake just after it
_RETRYING = (State.BACKOFF, State.AUTH_FAILED, State.NOT_FOUND, State.DISK_FULL)


class Component(Protocol):
    """A part of the daemon with its own life (catalog, uploader, pruner, control channel...)."""

    def start(self) -> None: ...

    def tick(self) -> None: ...

    def stop(self) -> None: ...


_RunEnd = tuple[Path, str]


class Daemon:
    def __init__(self, config: Config, ffmpeg_exe: str, clock: Clock | None = None) -> None:
        self.config = config
        self.ffmpeg_exe = ffmpeg_exe
        self.clock = clock or SystemClock()
        self.save_path = config.storageConfig.savePath
        self.state_dir = config.storageConfig.state_dir
        self.staging_root = staging.staging_root(self.state_dir)
        self.bus = SegmentBus()
        self.finisher = SegmentFinisher(self.save_path, self.state_dir, ffmpeg_exe, self.bus, self.clock)
        self._work: queue.Queue[StagedSegment | _RunEnd | None] = queue.Queue()
        self.watcher = SegmentWatcher(self.staging_root, self._work.put)
        self.cameras: dict[str, Camera] = {}
        self.components: list[Component] = []
        self.storage = catalog_wiring.attach(self)  # catalog: first bus subscriber; retention component
        self._signals: list[int] = []
        self.waker = Waker()  # wait()s of the loop end early on a signal or an ffmpeg exit
        self._stop_requested = False
        self._force_exit = False
        self._worker: threading.Thread | None = None
        self.bus.subscribe("camera_counters", self._count_segment)
        self.ready_callbacks: list[Callable[[], None]] = []
        self.reload_callbacks: list[Callable[[], object]] = []  # config reload (SIGHUP, control request)
        self.stopping_callbacks: list[Callable[[], None]] = []  # called as shutdown begins

    # -- signals ------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        for name in ("SIGINT", "SIGTERM", "SIGBREAK", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None:
                signal.signal(sig, self._on_signal)
        self.waker.wake_on_signals()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)  # only record; the loop acts

    def request_stop(self) -> None:
        self._stop_requested = True
        self.waker.wake()

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == getattr(signal, "SIGHUP", None):
                self.on_reload_signal()
                continue
            if self._stop_requested:
                log.warning("second_stop_signal", signal=signal.Signals(signum).name, action="exit now")
                self._force_exit = True
            else:
                log.info("stop_signal", signal=signal.Signals(signum).name)
                self._stop_requested = True

    def on_reload_signal(self) -> None:
        if not self.reload_callbacks:
            log.info("reload_not_supported")
        for cb in self.reload_callbacks:
            cb()

    # -- life -----------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything before recording starts: folders, orphans of a killed run, segments it left behind."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        stopped = orphans.stop_orphans(self.staging_root)
        if stopped:
            log.warning("orphans_stopped", count=stopped)
        self.finisher.recover_all()
        self.storage.recover()  # catalog startup recovery (docs/segment-lifecycle.md)

    def start(self) -> None:
        self.watcher.start()
        self._worker = threading.Thread(target=self._work_loop, name="segment-finisher", daemon=True)
        self._worker.start()
        for comp in self.components:
            comp.start()
        for cam_cfg in self.config.cameras:
            if cam_cfg.enabled:
                self.add_camera(cam_cfg)
            else:
                log.info("camera_disabled", camera=cam_cfg.cameraName)
        for cb in self.ready_callbacks:
            cb()

    def add_camera(self, cam_cfg: CameraConfig) -> Camera:
        cam = Camera(cam_cfg, self.config.supervisor, self.ffmpeg_exe, self.state_dir, self.clock,
                     on_run_ended=self._run_ended, on_exit=self.waker.wake)
        self.cameras[cam.name] = cam
        cam.start()
        return cam

    def run(self) -> int:
        """Record until a stop signal; returns the process exit code."""
        log.info("daemon_starting", cameras=[cam.cameraName for cam in self.config.cameras if cam.enabled],
                 save_path=str(self.save_path), ffmpeg=self.ffmpeg_exe)
        self.prepare()
        self.start()
        next_poll = self.clock.monotonic() + SAFETY_POLL_S
        while not self._stop_requested:
            self._handle_signals()
            self.tick()
            if self.clock.monotonic() >= next_poll:
                self.watcher.poll_all()
                next_poll = self.clock.monotonic() + SAFETY_POLL_S
            self.waker.wait(self.next_wait())
        return self.shutdown()

    def next_wait(self) -> float:
        """How long the loop may sleep. SUPERVISOR_TICK_S while a camera starts or stops; otherwise until the
        first deadline (a stall, a retry, a component's `next_due()`) but at most IDLE_TICK_S: with every camera
        recording steadily, ticking 5 times a second was half of the daemon's CPU (docs/benchmarks.md). Signals
        and ffmpeg exits wake it."""
        now = self.clock.monotonic()
        wait = c.IDLE_TICK_S
        for cam in self.cameras.values():
            if cam.state == State.RECORDING and cam.proc is not None:
                last_advance, _, _ = cam.proc.snapshot()
                wait = min(wait, last_advance + cam.config.stallTimeout - now + STALL_MARGIN_S)
            elif cam.state in _RETRYING:
                wait = min(wait, cam.retry_at - now)
            elif cam.state != State.STOPPED:
                return c.SUPERVISOR_TICK_S
        for comp in self.components:  # a component with a deadline of its own (systemd's watchdog) says so
            next_due = getattr(comp, "next_due", None)
            due = next_due() if callable(next_due) else None
            if due is not None:
                wait = min(wait, due - now)
        return max(wait, 0.0)

    def tick(self) -> None:
        for cam in list(self.cameras.values()):
            try:
                cam.tick()
            except Exception:
                log.exception("camera_tick_failed", camera=cam.name)
        for comp in self.components:
            try:
                comp.tick()
            except Exception:
                log.exception("component_tick_failed", component=type(comp).__name__)

    def shutdown(self) -> int:
        log.info("daemon_stopping", cameras=len(self.cameras))
        for stopping_cb in self.stopping_callbacks:
            stopping_cb()
        for cam in self.cameras.values():
            cam.stop()
        while any(cam.state != State.STOPPED for cam in self.cameras.values()):
            self._handle_signals()
            if self._force_exit:
                for cam in self.cameras.values():
                    if cam.proc is not None:
                        cam.proc.polite_stop()
                log.warning("daemon_exit_now")
                return c.EXIT_RUNTIME
            for cam in self.cameras.values():
                cam.tick()
            time.sleep(0.05)
        self.watcher.poll_all()
        self._work.put(None)
        if self._worker is not None:
            self._worker.join(60)
        self.watcher.stop()
        for comp in reversed(self.components):
            try:
                comp.stop()
            except Exception:
                log.exception("component_stop_failed", component=type(comp).__name__)
        self.waker.close()
        log.info("daemon_stopped")
        return c.EXIT_OK

    # -- segment hand-off (one worker thread, in order) -------------------------------------------------
    def _run_ended(self, camera: str, cam_dir: Path, run_id: str) -> None:
        self.watcher.poll(staging.list_path(cam_dir, run_id))
        self._work.put((cam_dir, run_id))

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            try:
                if isinstance(item, StagedSegment):
                    self.finisher.finish(item)
                else:
                    cam_dir, run_id = item
                    self.finisher.close_run(cam_dir, run_id)
                    self.watcher.forget(staging.list_path(cam_dir, run_id))
            except Exception:
                log.exception("segment_handoff_failed", item=str(item))

    def _count_segment(self, seg: FinishedSegment) -> None:
        cam = self.cameras.get(seg.camera)
        if cam is not None:
            cam.counters.segments += 1
            cam.counters.last_segment_at = seg.end
