"""Retention: keeps our footage within its limits — total size (storageConfig.clearWhenFilePathReachGB), age
(retentionDays), free disk space (minFreeDiskGB) and per-camera caps (cameras[i].maxStorageGB) — reading sizes
from the catalog (never walking the tree). Oldest first across cameras; when S3 is configured, segments whose
upload is not verified go only when nothing uploaded is left (each such deletion is a counted warning).
Runs after every finished segment (bus subscriber) and every 60 s (tick)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.core.clock import Clock
from cctv_daemon.core.events import FinishedSegment

log = structlog.get_logger("cctv_daemon.retention")

GB = 1_000_000_000
CHECK_PERIOD_S = 60.0
_BATCH = 100

FreeSpaceFn = Callable[[Path], int]


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class Limits:
    total_bytes: int | None = None
    max_age_s: float | None = None
    min_free_bytes: int = 0
    per_camera_bytes: dict[str, int] = field(default_factory=dict)
    prefer_uploaded: bool = False  # S3 configured: delete verified uploads first

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
        )


class Retention:
    def __init__(self, catalog: Catalog, deleter: SegmentDeleter, limits: Limits, clock: Clock,
                 free_space: FreeSpaceFn = disk_free, period_s: float = CHECK_PERIOD_S) -> None:
        self.catalog = catalog
        self.deleter = deleter
        self.limits = limits
        self.clock = clock
        self.free_space = free_space
        self.period_s = period_s
        self._lock = threading.Lock()
        self._next_check = 0.0
        self.deleted = 0
        self.deleted_bytes = 0
        self.unuploaded_deleted = 0
        self.by_reason: dict[str, int] = {}
        self.last_check_at: float | None = None
        self.short_of_space = False

    # -- Component + bus subscriber ---------------------------------------------------------------------
    def start(self) -> None:
        self._next_check = self.clock.monotonic()  # first check at the first tick

    def tick(self) -> None:
        if self.clock.monotonic() >= self._next_check:
            self._next_check = self.clock.monotonic() + self.period_s
            self.enforce(blocking=False)

    def stop(self) -> None:
        pass

    def on_segment(self, _seg: FinishedSegment) -> None:
        self.enforce()

    # -- the policy -------------------------------------------------------------------------------------
    def enforce(self, blocking: bool = True) -> int:
        """Delete until every limit holds (or nothing is left to delete). Returns the number deleted."""
        if not self._lock.acquire(blocking=blocking):
            return 0  # another thread is enforcing right now
        try:
            n = self._by_age()
            for camera, cam_cap in sorted(self.limits.per_camera_bytes.items()):
                n += self._until(self._camera_over(camera, cam_cap), "camera-cap", camera)
            if self.limits.total_bytes is not None:
                cap = self.limits.total_bytes
                n += self._until(lambda: self.catalog.total_bytes() > cap, "total-cap")
            if self.limits.min_free_bytes > 0:
                n += self._until(self._short_of_space, "min-free")
            self.last_check_at = self.clock.time()
            return n
        finally:
            self._lock.release()

    def _camera_over(self, camera: str, cap: int) -> Callable[[], bool]:
        return lambda: self.catalog.totals().get(camera, (0, 0))[1] > cap

    def _short_of_space(self) -> bool:
        try:
            return self.free_space(self.catalog.save_path) < self.limits.min_free_bytes
        except OSError:
            return False

    def _by_age(self) -> int:
        if self.limits.max_age_s is None:
            return 0
        cutoff = self.clock.time() - self.limits.max_age_s
        n = 0
        while batch := self.catalog.oldest(before=cutoff, limit=_BATCH):
            for row in batch:
                self._delete(row, "age")
                n += 1
        return n

    def _until(self, over: Callable[[], bool], reason: str, camera: str | None = None) -> int:
        n = 0
        groups: tuple[bool | None, ...] = (True, False) if self.limits.prefer_uploaded else (None,)
        for uploaded in groups:
            while over():
                batch = self.catalog.oldest(camera=camera, uploaded=uploaded, limit=_BATCH)
                if not batch:
                    break
                for row in batch:
                    self._delete(row, reason)
                    n += 1
                    if not over():
                        break
        if over():
            if not (reason == "min-free" and self.short_of_space):
                log.error("retention_cannot_meet_limit", reason=reason, camera=camera,
                          detail="nothing of ours left to delete")
            self.short_of_space = self.short_of_space or reason == "min-free"
        elif reason == "min-free":
            self.short_of_space = False
        return n

    def _delete(self, row: SegmentRow, reason: str) -> None:
        if not self.deleter.delete_segment(row.path, f"retention:{reason}"):
            return
        self.deleted += 1
        self.deleted_bytes += row.size
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if self.limits.prefer_uploaded and row.upload_state != "uploaded":
            self.unuploaded_deleted += 1
            log.warning("segment_deleted_before_upload", camera=row.camera, path=row.path, reason=reason,
                        upload_state=row.upload_state, count=self.unuploaded_deleted)
        else:
            log.info("segment_deleted", camera=row.camera, path=row.path, reason=reason, bytes=row.size)

    # -- for the status command ---------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        totals = self.catalog.totals()
        try:
            free: int | None = self.free_space(self.catalog.save_path)
        except OSError:
            free = None
        return {
            "segments": sum(n for n, _b in totals.values()),
            "bytes": sum(b for _n, b in totals.values()),
            "cameras": {cam: {"segments": n, "bytes": b, "limitBytes": self.limits.per_camera_bytes.get(cam)}
                        for cam, (n, b) in sorted(totals.items())},
            "limitBytes": self.limits.total_bytes,
            "retentionDays": self.limits.max_age_s / 86400 if self.limits.max_age_s else None,
            "freeBytes": free,
            "minFreeBytes": self.limits.min_free_bytes,
            "shortOfSpace": self.short_of_space,
            "deleted": self.deleted,
            "deletedBytes": self.deleted_bytes,
            "deletedByReason": dict(self.by_reason),
            "unuploadedDeleted": self.unuploaded_deleted,
            "lastCheckAt": self.last_check_at,
        }
