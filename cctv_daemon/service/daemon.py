"""The daemon's one loop: starts a Camera per enabled camera, executes commands (service/commands.py), ticks the
cameras and components, publishes a snapshot (service/snapshot.py) every tick, and stops everything gracefully.
Signal handlers only record the signal; the loop acts on it. A second stop signal means exit now.
Assembled by service/root.py only; nothing here builds other components."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import structlog

from cctv_daemon.catalog.services import CatalogServices
from cctv_daemon.config.model import CameraConfig, Config
from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import Clock
from cctv_daemon.core.events import EventBus, FinishedSegment
from cctv_daemon.core.waker import Waker
from cctv_daemon.recording import ffmpeg_caps, live, orphans
from cctv_daemon.recording.camera import Camera, State
from cctv_daemon.segments.finisher import SegmentFinisher
from cctv_daemon.segments.handoff import SegmentHandoff
from cctv_daemon.service.camera_choices import CameraChoices
from cctv_daemon.service.camera_commands import register_camera_commands, register_catalog_commands
from cctv_daemon.service.commands import Args, CommandError, CommandQueue
from cctv_daemon.service.fleet_gate import FleetGate
from cctv_daemon.service.snapshot import CameraSnapshot, Snapshot, SnapshotPublisher

log = structlog.get_logger("cctv_daemon.supervisor")

# The hand-off's safety net: read every segment list (1.5-1.7 ms of CPU at 16 cameras, docs/benchmarks.md). Every
# 30 s misses nothing: a missed rename only delays its lines until the list's next rename (ffmpeg renames it after
# every segment, and the reader takes every new line of it then), an ffmpeg's exit reads its list at once
# (run_ended) and shutdown reads them all; the net is for renames lost wholesale (an inotify queue overflow, a
# failing watch), and with `-segment_list_size 64` and segments of at least 1 s a list still holds every entry
# 30 s later. A line read late is dated by the file's last write (mtime), so its times stay true.
SAFETY_POLL_S = 30.0
STALL_MARGIN_S = 0.01  # a stall is `now - last_advance > stallTimeout`: wake just after it
_RETRYING = (State.BACKOFF, State.AUTH_FAILED, State.NOT_FOUND, State.TRANSPORT_REFUSED, State.DISK_FULL)


class Component(Protocol):
    """A part of the daemon with its own life (retention, uploader, control socket, status file...).
    One with `starts_early = True` is started before the startup recovery (control socket, status file)."""

    def start(self) -> None: ...

    def tick(self) -> None: ...

    def stop(self) -> None: ...


class Daemon:
    def __init__(self, config: Config, ffmpeg_exe: str, clock: Clock, bus: EventBus, finisher: SegmentFinisher,
                 handoff: SegmentHandoff, storage: CatalogServices, commands: CommandQueue) -> None:
        self.config = config
        self.ffmpeg_exe = ffmpeg_exe
        self.clock = clock
        self.save_path = config.storageConfig.savePath
        self.state_dir = config.storageConfig.state_dir
        self.bus = bus
        self.finisher = finisher
        self.handoff = handoff
        self.staging_root = handoff.staging_root
        self.storage = storage
        self.commands = commands
        self.cameras: dict[str, Camera] = {}  # main loop only; other threads read self.snapshot
        self._live_capable: bool | None = None
        self.record_until: dict[str, float] = {}  # camera -> monotonic end of a `record` command
        self.record_labels: dict[str, str] = {}  # camera -> label of its current `record` command
        self.choices = CameraChoices(self.state_dir)  # cameras stopped by command stay stopped across restarts
        self.components: list[Component] = []
        self.gate: FleetGate | None = None  # with a fleet: cameras record only under their lease (fleet_gate.py)
        self.ready_callbacks: list[Callable[[], None]] = []
        self.reload_callbacks: list[Callable[[], object]] = []  # config reload (SIGHUP, reload command)
        self.stopping_callbacks: list[Callable[[], None]] = []  # called as shutdown begins
        self.snapshots = SnapshotPublisher(config, clock.time())
        self._rows: dict[str, tuple[tuple[Any, ...], CameraSnapshot]] = {}  # each camera's last row (publish)
        self.phase = "starting"
        self._signals: list[int] = []
        self.waker = Waker()  # wait()s of the loop end early on a signal or an ffmpeg exit
        self._stop_requested = False
        self._stop_signalled = False
        self._force_exit = False
        commands.on_submit = self.waker.wake  # a command is answered within ms, not after a tick
        commands.register("stop", self._cmd_stop)
        commands.register("status", lambda _args: self.publish(refresh_all=True).to_dict())  # every part fresh
        register_camera_commands(self)
        register_catalog_commands(self)

    @property
    def snapshot(self) -> Snapshot:
        """The latest published snapshot: any thread, no lock."""
        return self.snapshots.current

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
            if self._stop_signalled:  # a stop command followed by `stop`'s SIGTERM fallback is not "twice"
                log.warning("second_stop_signal", signal=signal.Signals(signum).name, action="exit now")
                self._force_exit = True
            else:
                log.info("stop_signal", signal=signal.Signals(signum).name)
                self._stop_requested = self._stop_signalled = True

    def on_reload_signal(self) -> None:
        if not self.reload_callbacks:
            log.info("reload_not_supported")
        for cb in self.reload_callbacks:
            cb()

    def _cmd_stop(self, _args: Args) -> dict[str, Any]:
        if not self._stop_requested:
            log.info("stop_command")
        self._stop_requested = True
        return {"stopping": True}

    def refuse_if_stopping(self) -> None:
        if self._stop_requested:
            raise CommandError("the daemon is stopping")

    # -- life -----------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything before recording starts: folders, orphans of a killed run, segments it left behind."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        stopped = orphans.stop_orphans(self.staging_root)
        if stopped:
            log.warning("orphans_stopped", count=stopped)
        # No new segment may start before the newest catalogued end (names never overlap across runs).
        self.finisher.seed_last_ends(self.storage.newest_end())  # from the files while the database is away
        self.finisher.recover_all()
        self.storage.recover()  # catalog startup recovery (docs/segment-lifecycle.md)

    def start_early(self) -> None:
        """The control socket and status file, before prepare(): `status` answers during the recovery."""
        self.publish(refresh_all=True)
        for comp in self.components:
            if getattr(comp, "starts_early", False):
                comp.start()

    def start(self) -> None:
        self.handoff.start()
        for comp in self.components:
            if not getattr(comp, "starts_early", False):
                comp.start()
        for cam_cfg in self.config.cameras:
            if cam_cfg.enabled:
                self.autostart_camera(cam_cfg)
            else:
                log.info("camera_disabled", camera=cam_cfg.cameraName)
        self.phase = "running"
        self.publish(refresh_all=True)
        for cb in self.ready_callbacks:
            cb()

    def autostart_camera(self, cam_cfg: CameraConfig) -> None:
        """Start an enabled camera unless it records only on demand or was stopped by command (and its config
        has not changed since)."""
        if cam_cfg.mode == "onDemand":
            log.info("camera_on_demand", camera=cam_cfg.cameraName, detail="recorded only on a record command")
        elif self.choices.is_stopped(cam_cfg):
            log.info("camera_stopped_by_command", camera=cam_cfg.cameraName,
                     detail="stopped by a stop command; start it again to record")
        elif self.gate is None or self.gate.allows(cam_cfg):
            self.add_camera(cam_cfg)

    def add_camera(self, cam_cfg: CameraConfig) -> Camera:
        cam = Camera(cam_cfg, self.config.supervisor, self.ffmpeg_exe, self.finisher.spool, self.clock,
                     on_run_ended=self.handoff.run_ended, on_state=self.bus.publish, on_exit=self.waker.wake,
                     live_dir=self._live_dir(cam_cfg))
        self.cameras[cam.name] = cam
        cam.start()
        return cam

    def _live_dir(self, cam_cfg: CameraConfig) -> Path | None:
        """The camera's live view folder, when its live view is on and this ffmpeg can write it (the capability
        trial, cached per binary; an ffmpeg without tee/hls records without live view, saying so once)."""
        if not live.enabled(self.config, cam_cfg):
            return None
        if self._live_capable is None:
            lacking = ffmpeg_caps.probe(self.ffmpeg_exe).missing.get(ffmpeg_caps.LIVE)
            self._live_capable = lacking is None
            if lacking is not None:
                log.warning("live_view_unavailable", ffmpeg=self.ffmpeg_exe, error=lacking,
                            detail="this ffmpeg cannot write the live view; cameras record without it")
        return live.camera_dir(self.config, cam_cfg) if self._live_capable else None

    def run(self) -> int:
        """Record until stopped; returns the process exit code."""
        log.info("daemon_starting", cameras=[cam.cameraName for cam in self.config.cameras if cam.enabled],
                 save_path=str(self.save_path), ffmpeg=self.ffmpeg_exe)
        self.start_early()
        self.prepare()
        self.start()
        next_poll = self.clock.monotonic() + SAFETY_POLL_S
        while not self._stop_requested:
            acted = bool(self._signals)
            self._handle_signals()
            acted = self.commands.run_pending() > 0 or acted
            self.tick()
            self.publish(refresh_all=acted)  # after a command or signal: every part of the snapshot is fresh
            if self.clock.monotonic() >= next_poll:
                self.handoff.poll_all()
                next_poll = self.clock.monotonic() + SAFETY_POLL_S
            if not self._stop_requested:  # a stop asked during this tick begins at once, not after the sleep
                self.waker.wait(self.next_wait())  # cut short by a signal, a command or an ffmpeg exit
        return self.shutdown()

    def next_wait(self) -> float:
        """How long the loop may sleep. SUPERVISOR_TICK_S while a camera starts or stops; otherwise until the
        first deadline (a stall, a retry or reach probe, a `record` command's end, a component's `next_due()`:
        systemd's watchdog ping, status.json, retention's timer) but at most IDLE_TICK_S (2 s: the published
        snapshot's age stays well under the API health check's 5 s), and ANCHOR_TICK_S while a run's anchor is
        measured: with every camera recording steadily, each tick costs ~0.5 ms of CPU at 16 cameras
        (docs/benchmarks.md). Signals, commands and ffmpeg exits wake it at once."""
        now = self.clock.monotonic()
        wait = c.IDLE_TICK_S
        for cam in self.cameras.values():
            if cam.state == State.RECORDING and cam.proc is not None:
                last_advance, out_us, _ = cam.proc.snapshot()
                wait = min(wait, last_advance + cam.config.stallTimeout - now + STALL_MARGIN_S)
                if out_us <= c.ANCHOR_WINDOW_US:  # the run's anchor is refined from the reports tick() samples
                    wait = min(wait, c.ANCHOR_TICK_S)
            elif cam.state in _RETRYING:
                wait = min(wait, cam.wake_at() - now)  # its retry, or its reach probe's next step
            elif cam.state != State.STOPPED:
                return c.SUPERVISOR_TICK_S
        for until in self.record_until.values():  # a `record` command's end
            wait = min(wait, until - now)
        for comp in self.components:  # a component with a deadline of its own (systemd's watchdog) says so
            next_due = getattr(comp, "next_due", None)
            due = next_due() if callable(next_due) else None
            if due is not None:
                wait = min(wait, due - now)
        return max(wait, 0.0)

    def tick(self) -> None:
        if self.gate is not None:
            self.gate.tick()  # start/stop cameras as their leases come and go (before they are ticked)
        now = self.clock.monotonic()
        for name, until in list(self.record_until.items()):
            if now >= until:
                del self.record_until[name]
                self.record_labels.pop(name, None)
                cam = self.cameras.get(name)
                if cam is not None:
                    log.info("record_finished", camera=name)
                    cam.stop()
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

    def publish(self, refresh_all: bool = False) -> Snapshot:
        wall_offset = self.clock.time() - self.clock.monotonic()
        cams = CameraSnapshot.rows(self.cameras, self.record_until, self.record_labels, wall_offset, self._rows)
        if self.gate is not None:
            cams = self.gate.rows(cams)
        return self.snapshots.publish(config=self.config, now=self.clock.time(), monotonic=self.clock.monotonic(),
                                      phase=self.phase, cameras=cams, components=self.components,
                                      refresh_all=refresh_all)

    def shutdown(self) -> int:
        log.info("daemon_stopping", cameras=len(self.cameras))
        self.phase = "stopping"
        self.publish(refresh_all=True)
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
            self.commands.run_pending()  # answered (stop: "stopping"; others refused) while cameras stop
            for cam in self.cameras.values():
                cam.tick()
            self.publish()
            time.sleep(0.05)
        self.handoff.stop()
        self.phase = "stopped"
        self.publish(refresh_all=True)
        self.commands.close("the daemon has stopped")
        for comp in reversed(self.components):
            try:
                comp.stop()
            except Exception:
                log.exception("component_stop_failed", component=type(comp).__name__)
        self.waker.close()
        log.info("daemon_stopped")
        return c.EXIT_OK

    # -- bus subscriber (hand-off worker thread) ---------------------------------------------------------
    def count_segment(self, seg: FinishedSegment) -> None:
        cam = self.cameras.get(seg.camera)
        if cam is not None:
            cam.counters.segments += 1
            cam.counters.last_segment_at = seg.end
