"""Exponential backoff with jitter and a cap."""

from __future__ import annotations

import random

from cctv_daemon.core.constants import BACKOFF_JITTER


class Backoff:
    def __init__(
        self, base: float, cap: float, jitter: float = BACKOFF_JITTER, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self, at_cap: bool = False) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        raw = self.cap if at_cap else min(self.cap, self.base * (2**self.failures))
        self.failures += 1
        spread = raw * self.jitter
        return max(0.0, min(self.cap * (1 + self.jitter), raw + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.failures = 0
