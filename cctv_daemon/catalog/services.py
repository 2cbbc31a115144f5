"""The catalog, deletion and retention as one service the composition root (service/root.py) wires: it subscribes
the catalog (first) and retention to the bus, and recover() runs in Daemon.prepare() after the finisher's recovery.
Built from explicit arguments: nothing here knows the daemon."""

from __future__ import annotations

from pathlib import Path

from cctv_daemon.catalog import labels
from cctv_daemon.catalog import recovery as catalog_recovery
from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.retention import Limits, Retention
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.config.model import Config
from cctv_daemon.core.clock import Clock


class CatalogServices:
    """Also a daemon component named "catalog": its status says when a damaged catalog was moved aside."""

    name = "catalog"

    def __init__(self, config: Config, clock: Clock) -> None:
        self.state_dir: Path = config.storageConfig.state_dir
        self.camera_names = [cam.cameraName for cam in config.cameras]
        self.catalog = Catalog.for_state_dir(self.state_dir, config.storageConfig.savePath, clock)
        labels.ensure_table(self.catalog)
        self.deleter = SegmentDeleter(self.catalog)
        self.retention = Retention(self.catalog, self.deleter, Limits.from_config(config), clock)
        self.rebuilt: int | None = None  # rows the startup recovery rebuilt from the files after a move aside

    def delete_segment(self, rel_path: str, reason: str) -> bool:
        return self.deleter.delete_segment(rel_path, reason)

    def recover(self) -> None:
        added = catalog_recovery.startup_recover(self.catalog, self.deleter, self.state_dir, self.camera_names)
        if self.catalog.moved_aside is not None:
            self.rebuilt = added
        self.retention.enforce()

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
