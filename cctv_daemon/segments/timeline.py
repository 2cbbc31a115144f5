"""Wall-clock names of one camera's segments (docs/segment-lifecycle.md, "Names and time").

A segment's END is the wall-clock time at which ffmpeg reported it closed: ffmpeg prints the segment's list line
when it processes the keyframe that starts the next segment, i.e. when that keyframe arrived. (For segments
finished by the startup recovery, whose list line nobody saw in time, it is the file's last write, which happens
at the same moment.) A segment's START is the end of the previous segment of its run, so consecutive segments
touch; the first segment of a run starts at the run's anchor (the wall time of its media time 0, measured from
ffmpeg's progress reports, see recording/camera.py). The camera's own timestamps (drift, jumps) only ever
measure a segment's media duration, which is kept apart; they never move a name.

No overlap wins: a segment never starts before the previous segment of its camera ended (across runs), and never
ends before it starts; after a backward step of the wall clock, names are clamped to the previous end until the
clock has passed it (logged). A step of the wall clock either way is detected against the monotonic clock and
logged; names follow the corrected clock; nothing already named is renamed.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

log = structlog.get_logger("cctv_daemon.timeline")

STEP_THRESHOLD_S = 1.0  # a wall-clock jump this large (against the monotonic clock) is logged as a step
CLAMP_LOG_S = 1.0  # clamping by more than this is logged (small overlaps at run joins are measurement noise)
FIRST_OF_RUN_MAX_S = 0.5  # a run's first segment starts at media time ~0 (segments last at least a second)
# A run's first segment shorter than this starts at (its end - its media duration): a camera clock 1 % off
# makes that at most 0.2 s wrong. A longer one starts at the run's anchor, measured over its first seconds.
SHORT_FIRST_S = 20.0


@dataclass(frozen=True)
class Placed:
    start: float
    end: float
    clamped: bool  # start or end moved to avoid an overlap


@dataclass(frozen=True)
class Observed:
    """When the daemon saw a segment close: wall clock and monotonic clock at the same instant."""

    wall: float
    mono: float


class CameraTimeline:
    def __init__(self, camera: str) -> None:
        self.camera = camera
        self.last_end: float | None = None  # end of the newest named segment of this camera (any run)
        self._run_end: dict[str, float] = {}  # run id -> end of its newest segment
        self._seen: Observed | None = None

    def seed(self, last_end: float) -> None:
        """The newest end the catalog knows (startup): nothing new may start before it."""
        if self.last_end is None or last_end > self.last_end:
            self.last_end = last_end

    def check_step(self, seen: Observed) -> float:
        """Compare the wall clock's progress with the monotonic clock's since the last observation; a difference
        of a second or more is a wall-clock step (NTP, an operator): logged, returned (seconds, + = forward)."""
        prev, self._seen = self._seen, seen
        if prev is None:
            return 0.0
        step = (seen.wall - prev.wall) - (seen.mono - prev.mono)
        if abs(step) >= STEP_THRESHOLD_S:
            log.warning("wall_clock_step", camera=self.camera, step_s=round(step, 3),
                        direction="forward" if step > 0 else "backward",
                        effect="names follow the corrected clock" if step > 0 else
                        "names are clamped to the previous end until the clock passes it")
            return step
        return 0.0

    def place(self, run_id: str, media_start: float, end: float, media_duration: float,
              anchor: float | None) -> Placed:
        """Wall start/end of a run's next segment: `end` is when it closed (wall), `media_start` its offset in
        the run's media time, `anchor` the wall time of the run's media time 0 (None when unknown)."""
        run_end = self._run_end.get(run_id)
        if run_end is not None:
            start = run_end  # touches the previous segment of its run
        elif media_start < FIRST_OF_RUN_MAX_S:  # the first segment of a run
            long_one = anchor is not None and media_duration > SHORT_FIRST_S
            start = anchor + media_start if anchor is not None and long_one else end - media_duration
        elif self.last_end is not None and end - self.last_end <= media_duration * 1.05 + 2.0:
            start = self.last_end  # recovery: continues the run whose earlier segments are already named
        else:
            start = end - media_duration  # nothing better known
        clamped = False
        if self.last_end is not None and start < self.last_end:
            if self.last_end - start > CLAMP_LOG_S:
                log.warning("segment_start_clamped", camera=self.camera, by_s=round(self.last_end - start, 3),
                            reason="would start before the previous segment ended")
            clamped = self.last_end - start > 0.001
            start = self.last_end
        if end < start:
            if start - end > CLAMP_LOG_S:
                log.warning("segment_end_clamped", camera=self.camera, by_s=round(start - end, 3),
                            reason="the wall clock is behind the previous segment's end (stepped back)")
            clamped = True
            end = start
        self._run_end[run_id] = end
        self.last_end = end
        return Placed(start, end, clamped)

    def forget_run(self, run_id: str) -> None:
        self._run_end.pop(run_id, None)
