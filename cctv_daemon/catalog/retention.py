"""Retention keeps our footage within its limits (retentionDays, clearWhenFilePathReachGB, cameras[i].maxStorageGB,
minFreeDiskGB), reading sizes from the catalog (never walking the tree), oldest first across cameras, on its own
thread: the main loop and the hand-off worker only wake it (tick, a finished segment that could matter:
retention_gate.py, a camera that hit a full disk), so a prune of any size never delays them or readiness.

What goes first with S3 (docs/segment-lifecycle.md, Retention): the age rule and the size caps delete only
footage whose upload is verified (not-uploaded footage may exceed a cap: a warning, `status`; `retentionStrict`
makes the age rule delete regardless); the free-space floor and a full disk delete uploaded footage first, then
the rest, oldest first, and every deletion of not-uploaded footage is footage lost (an error line, counted in
`status`, kept in the row's reason across restarts). Without S3 every rule deletes the oldest footage. A floor that
deleting all our footage could not meet deletes nothing (an error); a full disk (ENOSPC) is pruned back to a head
room of a few segments."""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.disk_space import SpaceReserve, disk_free, headroom
from cctv_daemon.catalog.engine import error_text, is_connection_error
from cctv_daemon.catalog.retention_clock import TrustedWallClock
from cctv_daemon.catalog.retention_gate import CheckGate
from cctv_daemon.catalog.store import Catalog, SegmentRow, is_uploaded
from cctv_daemon.core.clock import Clock
from cctv_daemon.core.events import CameraStateChanged, FinishedSegment

log = structlog.get_logger("cctv_daemon.retention")

GB = 1_000_000_000
CHECK_PERIOD_S = 60.0
STOP_JOIN_S = 10.0
_BATCH = 100
LOST_MARK = "(not uploaded)"  # ends the reason of a deletion that lost footage

FreeSpaceFn = Callable[[Path], int]


@dataclass(frozen=True)
class Limits:
    total_bytes: int | None = None
    max_age_s: float | None = None
    min_free_bytes: int = 0
    per_camera_bytes: dict[str, int] = field(default_factory=dict)
    prefer_uploaded: bool = False  # S3 configured: what is off-site goes first; the rest only for free space
    strict: bool = False  # retentionStrict: the age rule deletes not-uploaded footage too

    @classmethod
    def from_config(cls, config: object) -> Limits:
        from cctv_daemon.config.model import Config

        assert isinstance(config, Config)
        sc = config.storageConfig
        return cls(
            total_bytes=int(sc.clearWhenFilePathReachGB * GB) if sc.clearWhenFilePathReachGB else None,
            max_age_s=sc.retentionDays * 86400 if sc.retentionDays else None,
            min_free_bytes=int(sc.minFreeDiskGB * GB),
            per_camera_bytes={cam.cameraName: int(cam.maxStorageGB * GB) for cam in config.cameras
                              if cam.maxStorageGB},
            prefer_uploaded=config.s3Config is not None,
            strict=sc.retentionStrict,
        )


def read_ack(path: Path | None) -> float:
    """The time up to which lost footage was acknowledged (0: never); a missing or unreadable file is 0."""
    if path is None:
        return 0.0
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("acknowledgedAt", 0)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0
    except (OSError, ValueError, AttributeError):
        return 0.0


def write_ack(path: Path, when: float) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"acknowledgedAt": when}) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class LostFootage:
    """Footage deleted before it reached the bucket."""

    count: int = 0
    bytes: int = 0
    oldest: float | None = None  # start of the oldest lost segment

    def add(self, row: SegmentRow) -> None:
        self.count += 1
        self.bytes += row.size
        self.oldest = row.start if self.oldest is None else min(self.oldest, row.start)


class _Stopping(Exception):
    pass


class Retention:
    name = "retention"

    def __init__(self, catalog: Catalog, deleter: SegmentDeleter, limits: Limits, clock: Clock,
                 free_space: FreeSpaceFn = disk_free, period_s: float = CHECK_PERIOD_S,
                 reserve: SpaceReserve | None = None, ack_file: Path | None = None) -> None:
        self.catalog = catalog
        self.ack_file = ack_file  # lost footage deleted up to the time it holds was acknowledged (`ack-lost`)
        self.deleter = deleter
        self.limits = limits
        self.clock = clock
        self.free_space = free_space
        self.period_s = period_s
        self.reserve = reserve
        self.trusted = TrustedWallClock(clock)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.waiting_for_db = False  # the catalog database is away (catalog.url outage): retention resumes by itself
        self._room_made = threading.Event()
        self._room_wanted = False
        self._thread: threading.Thread | None = None
        self._next_check = 0.0
        self.deleted = 0
        self.deleted_bytes = 0
        self.by_reason: dict[str, int] = {}
        self.lost = LostFootage()
        self.last_check_at: float | None = None
        self.short_of_space = False
        self.floor_unreachable = False
        self.pruning = False
        self.warnings: dict[str, str] = {}  # key -> message, while it holds (status)
        self.gate = CheckGate(limits, self._free, clock.time)  # which finished segments wake a check

    # -- Component: the main loop calls these; none of them waits --------------------------------------
    def start(self) -> None:
        self._next_check = self.clock.monotonic() + self.period_s
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def next_due(self) -> float:  # its periodic check (monotonic): the daemon's loop wakes for it
        return self._next_check

    def tick(self) -> None:
        if self.clock.monotonic() >= self._next_check:
            self._next_check = self.clock.monotonic() + self.period_s
            self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_S)
            if self._thread.is_alive():
                log.warning("retention_still_running", waited_s=STOP_JOIN_S)

    # -- wake-ups from other threads ---------------------------------------------------------------------
    def on_segment(self, seg: FinishedSegment) -> None:  # a check only if it could act (retention_gate.py)
        if self._room_wanted or self.gate.needs_check(seg.camera, seg.start, seg.size):
            self._wake.set()

    def on_camera_state(self, ev: CameraStateChanged) -> None:
        if ev.new == "disk_full":
            self.request_room()

    def request_room(self) -> None:
        """The disk is full (ENOSPC seen): prune back to a head room as soon as possible."""
        self._room_made.clear()
        self._room_wanted = True
        self._wake.set()

    def wait_for_room(self, timeout: float) -> bool:
        """Ask for room and wait (up to ``timeout``) until a prune made it; without the thread, prune here."""
        self.request_room()
        if self._thread is None or not self._thread.is_alive():
            self.enforce()
            return True
        return self._room_made.wait(timeout)

    def _run(self) -> None:
        lost_loaded = False
        while not self._stopping.is_set():
            self._wake.clear()
            if self.catalog.waiting is not None:  # the database has not answered since the start: no schema yet
                self.waiting_for_db = True
                self._wake.wait(self.period_s)
                continue
            if not lost_loaded:
                try:
                    self._load_lost()
                    lost_loaded = True
                except Exception as exc:
                    if not is_connection_error(exc):  # the database away: read it when it is back
                        log.exception("retention_lost_count_unreadable")
                        lost_loaded = True
            try:
                self.enforce()
            except _Stopping:
                break
            except Exception as exc:
                if not is_connection_error(exc):
                    log.exception("retention_failed")
                elif not self.waiting_for_db:  # once per outage: it resumes by itself
                    log.warning("retention_waiting_for_catalog", error=error_text(exc))
                self.waiting_for_db = is_connection_error(exc)
            else:
                if self.waiting_for_db:
                    log.info("retention_resumed")
                self.waiting_for_db = False
            self._wake.wait(self.period_s)

    def _load_lost(self) -> None:
        """Footage lost since the last acknowledgement (deletions marked in the catalog survive restarts)."""
        n, b, oldest = self.catalog.lost_since(f"retention:%{LOST_MARK}", read_ack(self.ack_file))
        self.lost = LostFootage(n, b, oldest)

    def acknowledge_lost(self) -> dict[str, Any]:
        """`ack-lost`: the user has been told; `status` stops listing the footage lost so far (the catalog rows
        and the error log lines stay). Returns what was acknowledged."""
        seen, self.lost = self.lost, LostFootage()
        if self.ack_file is not None:
            write_ack(self.ack_file, self.clock.time())
        log.info("footage_lost_acknowledged", count=seen.count, bytes=seen.bytes, oldest=seen.oldest)
        return {"count": seen.count, "bytes": seen.bytes, "oldest": seen.oldest}

    # -- the policy (the retention thread; tests call enforce() directly) --------------------------------
    def enforce(self, blocking: bool = True) -> int:
        """Delete until every limit holds (or nothing more may be deleted). Returns the number deleted."""
        if not self._lock.acquire(blocking=blocking):
            return 0  # another thread is enforcing right now
        self.pruning = True
        self.gate.begin()
        try:
            n = self._make_room() if self._room_wanted else 0
            n += self._by_age()
            for camera, cam_cap in sorted(self.limits.per_camera_bytes.items()):
                n += self._cap(self._camera_over(camera, cam_cap), "camera-cap", camera)
            if self.limits.total_bytes is not None:
                cap = self.limits.total_bytes
                n += self._cap(lambda: self.catalog.total_bytes() > cap, "total-cap")
            if self.limits.min_free_bytes > 0:
                n += self._floor()
            if self._room_wanted:
                n += self._make_room()
            if self.reserve is not None and (free := self._free()) is not None:
                self.reserve.ensure(free)
            self.last_check_at = self.clock.time()
            holding = not (self.warnings or self.short_of_space or self.floor_unreachable or self._room_wanted)
            self.gate.end(self.catalog.totals, lambda: next((r.start for r in self.catalog.oldest(limit=1)), None),
                          holding)  # the oldest deletion candidate's start, whatever its upload state
            return n
        finally:
            self.pruning = False
            self._lock.release()

    def _groups(self) -> tuple[bool | None, ...]:
        return (True, False) if self.limits.prefer_uploaded else (None,)

    def _delete_while(self, more: Callable[[], bool], reason: str, uploaded: bool | None = None,
                      camera: str | None = None, before: float | None = None) -> int:
        n = 0
        while more():
            batch = self.catalog.oldest(camera=camera, uploaded=uploaded, before=before, limit=_BATCH)
            if not batch:
                break
            done = 0
            for row in batch:
                if self._stopping.is_set():
                    raise _Stopping
                if self._room_wanted and reason != "disk-full":
                    n += self._make_room()
                done += self._delete(row, reason)
                if not more():
                    break
            n += done
            if not done:
                break  # nothing of this batch could be deleted: do not spin on it
        return n

    def _by_age(self) -> int:
        if self.limits.max_age_s is None:
            return 0
        cutoff = self.trusted.now() - self.limits.max_age_s
        only_uploaded = self.limits.prefer_uploaded and not self.limits.strict
        return self._delete_while(lambda: True, "age", uploaded=True if only_uploaded else None, before=cutoff)

    def _camera_over(self, camera: str, cap: int) -> Callable[[], bool]:
        return lambda: self.catalog.totals().get(camera, (0, 0))[1] > cap

    def _cap(self, over: Callable[[], bool], reason: str, camera: str | None = None) -> int:
        """A size cap applies to uploaded footage only when S3 is configured."""
        n = self._delete_while(over, reason, uploaded=True if self.limits.prefer_uploaded else None, camera=camera)
        key = f"{reason}:{camera}" if camera else reason
        if over() and self.limits.prefer_uploaded:
            if key not in self.warnings:
                log.warning("cap_exceeded_by_unuploaded_footage", rule=reason, camera=camera,
                            detail="footage not uploaded yet is kept beyond the size cap until it is uploaded")
            self.warnings[key] = (f"{reason}{' ' + camera if camera else ''}: over the size cap with footage "
                                  "not uploaded yet (kept until uploaded)")
        else:
            self.warnings.pop(key, None)
        return n

    def _free(self) -> int | None:
        try:
            return self.free_space(self.catalog.save_path)
        except OSError:
            return None

    def _short_of(self, target: int) -> Callable[[], bool]:
        return lambda: (free := self._free()) is not None and free < target

    def _floor(self) -> int:
        target = self.limits.min_free_bytes
        free = self._free()
        if free is None or free >= target:
            self.short_of_space = self.floor_unreachable = False
            self.warnings.pop("min-free", None)
            return 0
        ours = self.catalog.total_bytes()
        if free + ours < target:  # deleting everything of ours would not meet it: delete nothing
            if not self.floor_unreachable:
                log.error("min_free_unreachable", min_free_bytes=target, free_bytes=free, our_bytes=ours,
                          detail="minFreeDiskGB cannot be met even by deleting all our footage; nothing is "
                                 "deleted for it (lower minFreeDiskGB or free space on the disk)")
            self.floor_unreachable = self.short_of_space = True
            self.warnings["min-free"] = (f"minFreeDiskGB unreachable: {free} bytes free, {ours} bytes of our "
                                         f"footage, floor {target}")
            return 0
        self.floor_unreachable = False
        self.warnings.pop("min-free", None)
        n = sum(self._delete_while(self._short_of(target), "min-free", uploaded=g) for g in self._groups())
        self.short_of_space = self._short_of(target)()
        return n

    def _make_room(self) -> int:
        """A full disk: prune (uploaded first) back to a head room of a few segments."""
        self._room_wanted = False
        if self.reserve is not None:
            self.reserve.release()  # lets the catalog record the deletions below
        target = headroom(self.catalog.totals())
        n = 0
        if self._short_of(target)():
            n = sum(self._delete_while(self._short_of(target), "disk-full", uploaded=g) for g in self._groups())
            still_short = self._short_of(target)()
            (log.error if still_short else log.warning)(
                "disk_full_pruned", deleted=n, free_bytes=self._free(), headroom_bytes=target,
                detail="nothing of ours left to delete" if still_short else "room made")
        self._room_made.set()
        return n

    def _delete(self, row: SegmentRow, reason: str) -> int:
        lost = self.limits.prefer_uploaded and not is_uploaded(row.upload_state)
        why = f"retention:{reason}" + (f" {LOST_MARK}" if lost else "")
        if not self.deleter.delete_segment(row.path, why):
            return 0
        self.deleted += 1
        self.deleted_bytes += row.size
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if lost:
            self.lost.add(row)
            log.error("footage_lost", camera=row.camera, path=row.path, reason=reason, bytes=row.size,
                      start=row.start, upload_state=row.upload_state, lost_count=self.lost.count,
                      detail="deleted before its upload was verified")
        else:
            log.info("segment_deleted", camera=row.camera, path=row.path, reason=reason, bytes=row.size)
        return 1

    # -- for the status command (main loop: no SQL beyond the per-camera totals) ------------------------
    def status(self) -> dict[str, object]:
        totals = self.catalog.totals() if self.catalog.waiting is None else {}
        warnings = dict(self.warnings)
        if self.lost.count:
            warnings["lost"] = f"{self.lost.count} segment(s) deleted before upload ({self.lost.bytes} bytes)"
        return {
            "segments": sum(n for n, _b in totals.values()),
            "bytes": sum(b for _n, b in totals.values()),
            "cameras": {cam: {"segments": n, "bytes": b, "limitBytes": self.limits.per_camera_bytes.get(cam)}
                        for cam, (n, b) in sorted(totals.items())},
            "limitBytes": self.limits.total_bytes,
            "retentionDays": self.limits.max_age_s / 86400 if self.limits.max_age_s else None,
            "retentionStrict": self.limits.strict,
            "freeBytes": self._free(),
            "minFreeBytes": self.limits.min_free_bytes,
            "shortOfSpace": self.short_of_space,
            "floorUnreachable": self.floor_unreachable,
            "pruning": self.pruning,
            "deleted": self.deleted,
            "deletedBytes": self.deleted_bytes,
            "deletedByReason": dict(self.by_reason),
            "lost": {"count": self.lost.count, "bytes": self.lost.bytes, "oldest": self.lost.oldest},
            "unuploadedDeleted": self.lost.count,
            "clockStepS": round(self.trusted.skew_s, 1),
            "warnings": sorted(warnings.values()),
            "lastCheckAt": self.last_check_at,
        }
