"""The time the age rule trusts: the wall clock, except that a forward step of it is ignored.

NTP stepping the clock forward (a box booted with a stale clock after days off, a fake-hwclock restore) would make
the age rule (retentionDays) see all footage as days older than it is and delete it at once. This clock follows
the wall clock while it advances at the pace of the monotonic clock (within a tolerance), follows it backwards at
once (deleting less is safe), and absorbs a forward step: it advances by monotonic time instead and remembers the
step (`skew_s`). A later backward step first gives back the absorbed skew. So a forward step never lets the age
rule delete more than it would have without the step; the cost is that, for the life of the process, the retention
window is longer by the step. A suspended machine counts as a step too (the monotonic clock stops in suspend)."""

from __future__ import annotations

import structlog

from cctv_daemon.core.clock import Clock

log = structlog.get_logger("cctv_daemon.retention")

STEP_TOLERANCE_S = 5.0  # slews and scheduling jitter are not steps


class TrustedWallClock:
    def __init__(self, clock: Clock, tolerance_s: float = STEP_TOLERANCE_S) -> None:
        self.clock = clock
        self.tolerance_s = tolerance_s
        self.skew_s = 0.0  # forward steps absorbed so far (wall clock minus trusted time)
        self._last = clock.time()
        self._last_mono = clock.monotonic()

    def now(self) -> float:
        wall, mono = self.clock.time(), self.clock.monotonic()
        expected = self._last + max(0.0, mono - self._last_mono)
        candidate = wall - self.skew_s
        if candidate > expected + self.tolerance_s:
            step = candidate - expected
            self.skew_s += step
            log.warning("wall_clock_stepped_forward", step_s=round(step, 1), absorbed_s=round(self.skew_s, 1),
                        effect="the age rule (retentionDays) ignores the step until the daemon restarts")
            candidate = expected
        elif candidate < expected - self.tolerance_s and self.skew_s > 0:
            give_back = min(self.skew_s, expected - candidate)
            self.skew_s -= give_back
            candidate += give_back
        self._last, self._last_mono = candidate, mono
        return candidate
