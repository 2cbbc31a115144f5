"""Plugs the catalog, deletion and retention into the daemon with two lines in supervisor.py:
`self.storage = catalog_wiring.attach(self)` (before any other bus subscriber) and
`self.storage.recover()` in Daemon.prepare() after the finisher's recovery."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cctv_daemon.catalog import recovery as catalog_recovery
from cctv_daemon.catalog.deletion import SegmentDeleter
from cctv_daemon.catalog.retention import Limits, Retention
from cctv_daemon.catalog.store import Catalog

if TYPE_CHECKING:
    from cctv_daemon.service.daemon import Daemon


class CatalogServices:
    def __init__(self, daemon: Daemon) -> None:
        self.state_dir = daemon.state_dir
        self.camera_names = [cam.cameraName for cam in daemon.config.cameras]
        self.catalog = Catalog.for_state_dir(daemon.state_dir, daemon.save_path, daemon.clock)
        self.deleter = SegmentDeleter(self.catalog)
        limits = Limits.from_config(daemon.config)
        self.retention = Retention(self.catalog, self.deleter, limits, daemon.clock)

    def delete_segment(self, rel_path: str, reason: str) -> bool:
        return self.deleter.delete_segment(rel_path, reason)

    def recover(self) -> None:
        catalog_recovery.startup_recover(self.catalog, self.deleter, self.state_dir, self.camera_names)
        self.retention.enforce()

    def status(self) -> dict[str, object]:
        return self.retention.status()


def attach(daemon: Daemon) -> CatalogServices:
    services = CatalogServices(daemon)
    daemon.bus.subscribe("catalog", services.catalog.add_segment)
    daemon.bus.subscribe("retention", services.retention.on_segment)
    daemon.components.append(services.retention)
    return services
