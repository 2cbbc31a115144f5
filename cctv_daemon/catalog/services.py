"""The catalog, deletion and retention as one service the composition root (service/root.py) wires: it subscribes
the catalog insert (first) and retention to the bus, and recover() runs in Daemon.prepare() after the finisher's
recovery. Built from explicit arguments: nothing here knows the daemon.

A full disk never leaves a finished file without its row: when the insert fails with "disk is full", retention is
asked to make room (oldest footage first) and the insert is tried again."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from cctv_daemon.catalog import labels
from cctv_daemon.catalog import recovery as catalog_recovery
from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.disk_space import SpaceReserve, is_disk_full
from cctv_daemon.catalog.retention import Limits, Retention
from cctv_daemon.catalog.store import Catalog, default_node_id
from cctv_daemon.config.model import Config
from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import Clock
from cctv_daemon.core.events import FinishedSegment

log = structlog.get_logger("cctv_daemon.catalog")

INSERT_RETRY_FOR_S = 120.0  # a full disk that pruning cannot fix within this: the startup recovery catalogues it
ROOM_WAIT_S = 2.0


class CatalogServices:
    """Also a daemon component named "catalog": its status says when a damaged catalog was moved aside."""

    name = "catalog"

    def __init__(self, config: Config, clock: Clock, node_id: str | None = None) -> None:
        self.state_dir: Path = config.storageConfig.state_dir
        self.camera_names = [cam.cameraName for cam in config.cameras]
        self.catalog = Catalog.from_config(config, node_id if node_id is not None else default_node_id(), clock)
        labels.ensure_table(self.catalog)
        self.deleter = SegmentDeleter(self.catalog, uploads_configured=config.s3Config is not None)
        self.retention = Retention(self.catalog, self.deleter, Limits.from_config(config), clock,
                                   reserve=SpaceReserve(self.state_dir),
                                   ack_file=self.state_dir / c.LOST_ACK_FILENAME)
        self.rebuilt: int | None = None  # rows the startup recovery rebuilt from the files after a move aside
        # Before the finisher's staging recovery adds the dead run's last segments: bounds the recovery scan.
        self._newest_at_open = self.catalog.newest_start()

    def delete_segment(self, rel_path: str, reason: str) -> bool:
        return self.deleter.delete_segment(rel_path, reason)

    def add_segment(self, seg: FinishedSegment) -> None:
        """Bus subscriber (the first one, on the hand-off worker): the segment's row, also on a full disk."""
        deadline = time.monotonic() + INSERT_RETRY_FOR_S
        attempt = 0
        while True:
            try:
                self.catalog.add_segment(seg)
                if attempt:
                    log.info("catalog_insert_after_disk_full", path=str(seg.path), attempts=attempt + 1)
                return
            except Exception as exc:
                if not is_disk_full(exc) or time.monotonic() > deadline:
                    raise
                attempt += 1
                if attempt == 1:
                    log.warning("catalog_insert_disk_full", path=str(seg.path), error=str(exc),
                                action="making room, then trying again")
                if not self.retention.wait_for_room(ROOM_WAIT_S):
                    time.sleep(0.2)

    def recover(self) -> None:
        """Startup recovery only: the first prune runs on retention's own thread once the daemon started, so a
        large one never delays readiness."""
        added = catalog_recovery.startup_recover(self.catalog, self.deleter, self.state_dir, self.camera_names,
                                                 self._newest_at_open)
        if self.catalog.moved_aside is not None:
            self.rebuilt = added

    # -- component (service/daemon.py): nothing to run, a status to show ------------------------------------
    def start(self) -> None:
        pass

    def tick(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, object]:
        moved = self.catalog.moved_aside
        return {"movedAside": str(moved) if moved is not None else None,
                "movedAsideReason": self.catalog.moved_aside_reason,
                "rebuiltSegments": self.rebuilt}
