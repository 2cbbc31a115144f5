"""Which finished segments must wake retention's check (catalog/retention.py): only those after which a check could
act. Every finished segment woke a full check before (1.6 a second at 16 cameras with 10 s segments), though with
limits far away it could delete nothing; a wake-up of the retention thread costs more than proving that here, on
the hand-off's thread (docs/benchmarks.md).

After a check that left every limit holding (no warning, not short of space), the gate keeps what that check left:
the room under the total cap and under each camera's cap (cap minus the catalog's totals, read after the check),
and the oldest start among the deletion candidates (the age rule). From then on it counts the bytes of every
finished segment (from the check's start on: a segment catalogued while the check read its totals is counted
twice, never missed) and wakes the check as soon as one of these could hold:
- a size cap exceeded: the bytes finished since the check exceed the room it left (the footage only grows through
  finished segments; deletions only shrink it), so a cap is never exceeded by more than one segment, as before;
- the free-space floor crossed: the free space read now (a statfs, as the check reads it) is under the floor;
- an age deletion due: the wall clock (never behind the retention's trusted clock) minus retentionDays reached the
  oldest candidate's start (a segment ends after it starts; a finished segment older than that lowers it).
Anything else (a check that failed, left a warning or a shortage, a full disk) wakes it on every segment as before.
What no finished segment announces (the space reserve removed by hand, rows added by `check --repair`, another
process filling the disk between segments) is seen by the check every CHECK_PERIOD_S (60 s), as between segments
before; a full disk (ENOSPC) asks for room at once (Retention.request_room)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cctv_daemon.catalog.retention import Limits


class CheckGate:
    def __init__(self, limits: Limits, free: Callable[[], int | None], wall_time: Callable[[], float]) -> None:
        self.limits = limits
        self._free = free  # free bytes now (None: unreadable)
        self._wall_time = wall_time
        self._lock = threading.Lock()
        self._proven = False  # the last check left every limit holding: the rooms below are valid
        self._added_total = 0  # bytes finished since the last check began
        self._added: dict[str, int] = {}
        self._total_room: int | None = None
        self._camera_room: dict[str, int] = {}
        self._age_from = float("inf")  # the oldest deletion candidate's start (a lower bound of its end)
        self.skipped = 0  # segments that did not wake the check (tests, benchmarks)

    def begin(self) -> None:
        """A check starts: count from now on; nothing is proven until it ends well."""
        with self._lock:
            self._proven = False
            self._added_total = 0
            self._added = {}
            self._age_from = float("inf")

    def end(self, totals: Callable[[], dict[str, tuple[int, int]]], oldest_start: Callable[[], float | None],
            limits_hold: bool) -> None:
        """A check ended; `limits_hold`: it left every limit holding (then the rooms are read, after it)."""
        if not limits_hold:
            return
        lim = self.limits
        total_room: int | None = None
        camera_room: dict[str, int] = {}
        if lim.total_bytes is not None or lim.per_camera_bytes:
            now = totals()
            if lim.total_bytes is not None:
                total_room = lim.total_bytes - sum(b for _n, b in now.values())
            camera_room = {cam: cap - now.get(cam, (0, 0))[1] for cam, cap in lim.per_camera_bytes.items()}
        age_from = float("inf")
        if lim.max_age_s is not None:
            start = oldest_start()
            age_from = float("inf") if start is None else start
        with self._lock:
            self._total_room, self._camera_room = total_room, camera_room
            self._age_from = min(age_from, self._age_from)  # lowered by segments finished during the check
            self._proven = True

    def invalidate(self) -> None:
        with self._lock:
            self._proven = False

    def needs_check(self, camera: str, start: float, size: int) -> bool:
        """A segment finished (its row is in the catalog): could a check act now?"""
        lim = self.limits
        with self._lock:
            self._added_total += size
            cam_added = self._added[camera] = self._added.get(camera, 0) + size
            if start < self._age_from:
                self._age_from = start
            if not self._proven:
                return True
            if self._total_room is not None and self._added_total > self._total_room:
                return True
            room = self._camera_room.get(camera)
            if room is not None and cam_added > room:
                return True
            age_from = self._age_from
        if lim.max_age_s is not None and self._wall_time() - lim.max_age_s >= age_from:
            return True
        if lim.min_free_bytes > 0:
            free = self._free()
            if free is None or free < lim.min_free_bytes:
                return True
        self.skipped += 1
        return False
