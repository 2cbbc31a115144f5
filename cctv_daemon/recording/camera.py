r"""A camera's life: an explicit state machine around its one long-lived ffmpeg.

    stopped -> starting -> recording -> (exit | stall) -> backoff -> starting ...
                        \-> auth_failed | not_found | transport_refused | disk_full (retry at the cap)
    any running state -> stopping -> stopped            (polite stop, then kill after stopTimeout)

The supervisor calls tick() from its one loop; nothing here blocks, so one camera never delays another.
"""

from __future__ import annotations

import enum
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from cctv_daemon.config.model import CameraConfig, SupervisorConfig
from cctv_daemon.core import constants as c
from cctv_daemon.core.backoff import Backoff
from cctv_daemon.core.clock import Clock
from cctv_daemon.core.events import CameraStateChanged
from cctv_daemon.core.redact import redact
from cctv_daemon.recording import ffmpeg_process as fp
from cctv_daemon.recording import live
from cctv_daemon.recording.ffmpeg_command import (
    SegmentOutput,
    audio_action,
    build_command,
    camera_url,
    input_playlist,
    rtsp_transport,
    source_label,
)
from cctv_daemon.recording.ffmpeg_process import FfmpegProcess
from cctv_daemon.recording.reach_probe import ReachProbe, rtsp_target
from cctv_daemon.segments import staging

log = structlog.get_logger("cctv_daemon.camera")


class State(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RECORDING = "recording"
    BACKOFF = "backoff"
    AUTH_FAILED = "auth_failed"
    NOT_FOUND = "not_found"
    TRANSPORT_REFUSED = "transport_refused"
    DISK_FULL = "disk_full"
    STOPPING = "stopping"


DISK_FULL_RETRY_S = 3.0  # a full disk is retried this often: retention makes room, recording resumes in seconds
_WAITING = (State.BACKOFF, State.AUTH_FAILED, State.NOT_FOUND, State.TRANSPORT_REFUSED, State.DISK_FULL)
# Failures after which the camera may simply be unreachable: during the backoff wait its port is probed (no
# credentials) and ffmpeg starts as soon as the camera is back (recording/reach_probe.py). Never after 401/404.
_PROBED = (fp.REFUSED, "stall", None)
# The run's anchor (wall time of media time 0) is refined from progress reports over its first seconds of media.
ANCHOR_WINDOW_US = c.ANCHOR_WINDOW_US
_FAILURE_STATE = {
    fp.AUTH_FAILED: (State.AUTH_FAILED, "authentication failed"),
    fp.NOT_FOUND: (State.NOT_FOUND, "stream path not found"),
    fp.TRANSPORT_REFUSED: (State.TRANSPORT_REFUSED,
                           "camera refuses this RTSP transport (461 Unsupported transport): set rtspTransport "
                           '"auto" (TCP, else UDP) or the one it accepts ("udp"/"tcp")'),
    fp.DISK_FULL: (State.DISK_FULL, "disk full"),
    fp.UNWRITABLE: (State.DISK_FULL, "recording folder not writable"),
    fp.REFUSED: (State.BACKOFF, "connection refused"),
    fp.NO_DEVICE: (State.BACKOFF, "device or file not found"),
    "stall": (State.BACKOFF, "stalled"),
}


# How an ffmpeg we asked to stop exits: 255 after "Exiting normally, received signal" (SIGTERM/SIGINT, CTRL_BREAK),
# 0 when it finished first, -SIGTERM when the signal came before its handler was installed, -SIGKILL after
# stopTimeout (warned about as ffmpeg_kill). Nothing worth reporting: only other codes are logged at a stop.
_STOP_EXIT_CODES = frozenset({0, 255, -int(signal.SIGTERM), -9})


def _unexpected(code: int | None) -> int | None:
    return None if code in _STOP_EXIT_CODES else code


# ffmpeg 5.1's segment muxer may crash (SIGSEGV, in mov's trailer) on ENOSPC, inside the tee muxer before it says
# "No space left on device": whatever ffmpeg said or how it ended, a run that ends with less than this free on
# the recording disk ended because the disk is full (retention is told: it prunes back to a head room).
DISK_FULL_FREE_BYTES = 1024 * 1024


def free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"ffmpeg crashed ({signal.Signals(-code).name})"
        except ValueError:
            return f"ffmpeg crashed (signal {-code})"
    return f"stream ended (exit status {code})"


@dataclass
class CameraCounters:
    starts: int = 0
    reconnects: int = 0
    stalls: int = 0
    segments: int = 0
    last_error: str | None = None
    last_segment_at: float | None = None  # wall clock
    state_since: float = 0.0  # wall clock
    extra: dict[str, object] = field(default_factory=dict)


RunEnded = Callable[[str, Path, str], None]  # (camera, staging dir, run id)
StateHook = Callable[[CameraStateChanged], None]  # called on every change of state (not of reason alone)


class Camera:
    def __init__(
        self,
        config: CameraConfig,
        supervisor: SupervisorConfig,
        ffmpeg_exe: str,
        spool_dir: Path,  # {savePath}/.cctv: staging lives on savePath's filesystem (segments/staging.py)
        clock: Clock,
        on_run_ended: RunEnded | None = None,
        on_state: StateHook | None = None,
        on_exit: Callable[[], None] | None = None,
        live_dir: Path | None = None,  # the live view's folder (recording/live.py); None: no live view
    ) -> None:
        self.config = config
        self.sup = supervisor
        self.ffmpeg_exe = ffmpeg_exe
        self.staging_dir = staging.staging_root(spool_dir) / config.cameraName
        self.clock = clock
        self.on_run_ended = on_run_ended
        self.on_state = on_state
        self.on_exit = on_exit  # called from a reader thread when ffmpeg exits: wakes the main loop
        self.live_dir = live_dir
        self.backoff = Backoff(supervisor.backoffBase, supervisor.backoffCap)
        self.state = State.STOPPED
        self.reason = "not started"
        self.counters = CameraCounters(state_since=clock.time())
        self.proc: FfmpegProcess | None = None
        self.run_id: str | None = None
        self.retry_at = 0.0
        self.stop_deadline = 0.0
        self._after_stop = State.STOPPED
        self._stop_started = 0.0
        self._nudged = False
        self._recording_since: float | None = None
        self._anchor: float | None = None
        self._probe: ReachProbe | None = None
        self._spawned_at = -1e9
        self._last_failure: str | None = None
        self._audio_codec: str | None = None
        self._transport_fallback: str | None = None  # rtspTransport "auto": "udp" once TCP was refused
        self._log = log.bind(camera=config.cameraName)

    @property
    def name(self) -> str:
        return self.config.cameraName

    # -- commands from the supervisor ----------------------------------------------------------------
    def start(self) -> None:
        if self.state in (State.STOPPED, *_WAITING):
            self._spawn()

    def stop(self) -> None:
        self._close_probe()
        if self.state in (State.STARTING, State.RECORDING):
            self._begin_stop("shutdown", then=State.STOPPED)
        elif self.state != State.STOPPING:
            self._set(State.STOPPED, "shutdown")
        else:
            self._after_stop = State.STOPPED

    @property
    def running(self) -> bool:
        return self.proc is not None

    # -- the loop ---------------------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.clock.monotonic()
        if self.state in _WAITING:
            if now >= self.retry_at or self._back_early(now):
                self._spawn()
            return
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is not None:
            self._exited(proc)
            return
        if self.state == State.STOPPING:
            if not self._nudged and now >= self._stop_started + c.SECOND_STOP_SIGNAL_AFTER_S:
                self._nudged = True
                proc.polite_stop()  # interrupts a read blocked on a stalled socket
            if now >= self.stop_deadline:
                self._log.warning("ffmpeg_kill", pid=proc.pid, reason="did not stop in time")
                proc.kill()
                self.stop_deadline = now + 3600
            return
        last_advance, out_us, _ = proc.snapshot()
        if 0 < out_us <= ANCHOR_WINDOW_US:
            self._measure_anchor(proc.reported_at, out_us)
        if self.state == State.STARTING and out_us > 0:
            self._recording(proc, out_us)
        elif (
            self.state == State.RECORDING
            and self._recording_since is not None
            and now - self._recording_since >= self.sup.steadyAfter
        ):
            if self.backoff.failures:
                self._log.debug("backoff_reset", after_s=self.sup.steadyAfter)
            self.backoff.reset()
            self._last_failure = None
            self._recording_since = None
        if now - last_advance > self.config.stallTimeout:
            self.counters.stalls += 1
            what = "no media" if self.state == State.STARTING else "media time stopped advancing"
            self.counters.last_error = f"stalled: {what} for {self.config.stallTimeout:g}s"
            self._log.warning("stall_detected", seconds=round(now - last_advance, 1), state=self.state.value)
            self._begin_stop("stall", then=State.BACKOFF)

    # -- transitions ------------------------------------------------------------------------------------
    def _set(self, state: State, reason: str, level: str = "info", **kw: object) -> None:
        if state != self.state or reason != self.reason:
            getattr(self._log, level)("camera_state", state=state.value, previous=self.state.value,
                                      reason=reason, **kw)
        old = self.state
        if state != old:
            self.counters.state_since = self.clock.time()
        self.state = state
        self.reason = reason
        if state != old and self.on_state is not None:
            self.on_state(CameraStateChanged(self.name, old.value, state.value, reason, self.counters.state_since))

    def _back_early(self, now: float) -> bool:
        """The probe saw the camera come back: start now rather than at the end of the backoff wait. Still at
        most one start per backoffBase, and the failure count is kept, so a camera that fails again waits
        longer as usual."""
        if self._probe is None or now - self._spawned_at < self.backoff.base:
            return False
        if not self._probe.poll():
            return False
        self._log.info("camera_back", probes=self._probe.probes, early_s=round(self.retry_at - now, 2))
        return True

    def wake_at(self) -> float:
        """While waiting: the monotonic time tick() next has work (the retry, or the reach probe's next step)."""
        if self._probe is None:
            return self.retry_at
        return min(self.retry_at, max(self._probe.due(), self._spawned_at + self.backoff.base))

    def _measure_anchor(self, reported_at: float, out_us: int) -> None:
        """Each progress report bounds the anchor from above: media time `out` cannot have arrived later than the
        report that names it was read. The smallest bound over the run's first seconds is kept, durably, in
        {run}.json."""
        reported_wall = self.clock.time() - (self.clock.monotonic() - reported_at)
        estimate = reported_wall - out_us / 1_000_000
        if self.run_id is None or (self._anchor is not None and estimate >= self._anchor - 0.02):
            return
        self._anchor = estimate
        try:
            staging.write_meta(self.staging_dir, self.run_id,
                               staging.RunMeta(self.name, self.config.videoFeedId, estimate))
        except OSError as exc:
            self._log.warning("anchor_not_saved", error=str(exc))

    def _close_probe(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def _spawn(self) -> None:
        now = self.clock.monotonic()
        self._close_probe()
        self._spawned_at = now
        self.run_id = staging.new_run_id(self.clock.time())
        try:
            self.staging_dir.mkdir(parents=True, exist_ok=True)
            staging.lists_dir(self.staging_dir).mkdir(parents=True, exist_ok=True)
            staging.write_meta(self.staging_dir, self.run_id,
                               staging.RunMeta(self.name, self.config.videoFeedId))
            args = build_command(self.config, self.ffmpeg_exe, SegmentOutput(self.staging_dir, self.run_id),
                                 self._audio_codec, live_dir=self._live_folder())
            playlist = input_playlist(self.config, rtsp_transport(self.config, self._transport_fallback))
            self.proc = FfmpegProcess(args, self.name, self.clock, stdin_data=playlist, on_exit=self.on_exit,
                                      source_label=source_label(self.config), stall_timeout_s=self.config.stallTimeout)
        except OSError as exc:
            self.proc = None
            kind = fp.DISK_FULL if exc.errno == 28 else fp.UNWRITABLE if exc.errno in (13, 30) else None
            self._failed(kind, f"cannot start: {redact(str(exc))}")
            return
        if self.counters.starts:
            self.counters.reconnects += 1
        self.counters.starts += 1
        self._anchor = None
        self._recording_since = None
        self._set(State.STARTING, "ffmpeg started", level="debug" if self._last_failure else "info",
                  pid=self.proc.pid,
                  audio=audio_action(self.config, self._audio_codec),
                  transcode=self.config.transcodes or self.config.source != "rtsp")
        self._log.debug("ffmpeg_command", args=fp.describe(args))
        self.stop_deadline = now

    def _live_folder(self) -> Path | None:
        """The live view's folder, emptied for this run; None (recording without live view) if it cannot be."""
        if self.live_dir is None:
            return None
        try:
            return live.prepare(self.live_dir)
        except OSError as exc:
            self._log.warning("live_view_unavailable", folder=str(self.live_dir), error=str(exc),
                              detail="recording goes on without the live view")
            return None

    def _recording(self, proc: FfmpegProcess, out_us: int) -> None:
        self._recording_since = self.clock.monotonic()
        self._set(State.RECORDING, "media flowing", audio_codec=proc.audio_codec)

    def _begin_stop(self, reason: str, then: State) -> None:
        proc = self.proc
        self._after_stop = then
        if proc is None:
            self._set(then, reason)
            return
        self._set(State.STOPPING, reason)
        proc.polite_stop()
        self._stop_started = self.clock.monotonic()
        self._nudged = False
        self.stop_deadline = self._stop_started + self.sup.stopTimeout

    def _exited(self, proc: FfmpegProcess) -> None:
        code = proc.poll()
        proc.join_readers(1.0)
        proc.close_pipes()
        _, _, failure = proc.snapshot()
        run_id = self.run_id
        self.proc = None
        if proc.audio_codec:
            self._audio_codec = proc.audio_codec
        if run_id is not None and self.on_run_ended is not None:
            self.on_run_ended(self.name, self.staging_dir, run_id)
        if self.state == State.STOPPING:
            after = self._after_stop
            unexpected = _unexpected(code)
            if after == State.STOPPED and unexpected is None:
                self._set(State.STOPPED, "stopped")  # asked for: info, whatever ffmpeg's usual exit status
            elif after == State.STOPPED:
                self._set(State.STOPPED, "stopped", exit_code=unexpected)
            else:
                self._failed("stall", self.counters.last_error or "stalled", exit_code=unexpected)
            return
        if failure == fp.AUDIO_UNSUPPORTED and audio_action(self.config, self._audio_codec) == "aac":
            self._log.info("audio_transcode", codec=self._audio_codec,
                           reason="codec cannot be stored in MP4; transcoding audio to AAC")
            self._spawn()
            return
        if (failure == fp.TRANSPORT_REFUSED and self.config.rtspTransport == "auto"
                and self._transport_fallback is None):
            self._transport_fallback = "udp"  # remembered for the rest of the run
            self._log.info("rtsp_transport_fallback", transport="udp",
                           reason="camera refused RTSP over TCP (461 Unsupported transport)")
            self._spawn()
            return
        last = proc.last_error or _ended(code)
        if failure is None:
            free = free_bytes(self.staging_dir)
            if free is not None and free < DISK_FULL_FREE_BYTES:
                failure, last = fp.DISK_FULL, f"{_ended(code)}; {free} bytes free on the recording disk"
        self._failed(failure, last, exit_code=code)

    def _failed(self, kind: str | None, detail: str, exit_code: int | None = None) -> None:
        self.counters.last_error = detail
        self._recording_since = None
        state, label = _FAILURE_STATE.get(kind or "", (State.BACKOFF, "stream ended"))
        at_cap = state in (State.AUTH_FAILED, State.NOT_FOUND, State.TRANSPORT_REFUSED)
        delay = self.backoff.next_delay(at_cap=at_cap)
        if state == State.DISK_FULL:
            delay = min(delay, DISK_FULL_RETRY_S)
        self.retry_at = self.clock.monotonic() + delay
        self._close_probe()
        target = rtsp_target(camera_url(self.config)) if self.config.source == "rtsp" else None
        if state == State.BACKOFF and kind in _PROBED and target is not None:
            self._probe = ReachProbe(target, self.clock, seen_down=kind == fp.REFUSED)
        # Say an error once per change of failure, not on every retry.
        new_failure = (kind or "ended") != self._last_failure
        self._last_failure = kind or "ended"
        level = "debug" if not new_failure else ("warning" if state == State.BACKOFF else "error")
        self._set(state, label, level=level, retry_in=round(delay, 2), detail=detail, exit_code=exit_code)
