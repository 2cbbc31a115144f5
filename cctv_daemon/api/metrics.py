"""GET /metrics: Prometheus text built at scrape time from the published snapshot and the API's own catalog
connection (no state of its own, nothing running between scrapes). Names are listed in docs/api.md."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cctv_daemon.api.context import ApiContext
from cctv_daemon.recording.camera import State

STATES = [*(s.value for s in State), "standby"]  # standby: waiting for its lease (a fleet)


class DaemonCollector(Collector):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        snap = ctx.snapshot()
        now = time.time()
        names = ctx.camera_names()
        state = GaugeMetricFamily("cctv_camera_state", "1 for the camera's current state", labels=["camera", "state"])
        segs = CounterMetricFamily("cctv_camera_segments_recorded", "segments finished since the daemon started",
                                   labels=["camera"])
        restarts = CounterMetricFamily("cctv_camera_restarts", "ffmpeg restarts since the daemon started",
                                       labels=["camera"])
        stalls = CounterMetricFamily("cctv_camera_stalls", "stalls detected since the daemon started",
                                     labels=["camera"])
        last_end = GaugeMetricFamily("cctv_camera_last_segment_end_timestamp_seconds",
                                     "end of the camera's newest finished segment", labels=["camera"])
        for name in names:
            cam = snap.cameras.get(name)
            current = cam.state if cam is not None else "stopped"
            for st in STATES:
                state.add_metric([name, st], 1.0 if st == current else 0.0)
            segs.add_metric([name], cam.segments if cam else 0)
            restarts.add_metric([name], max(0, cam.starts - 1) if cam else 0)
            stalls.add_metric([name], cam.stalls if cam else 0)
            if cam is not None and cam.last_segment_at is not None:
                last_end.add_metric([name], cam.last_segment_at)
        yield from (state, segs, restarts, stalls, last_end)
        yield from self._catalog(names, snap.started_at, now)
        yield from self._components(snap.components, snap.disk)
        yield from _fleet(snap.components.get("fleet"), names)

    def _catalog(self, names: list[str], started_at: float, now: float) -> Iterator[Metric]:
        cat = self.ctx.catalog
        stored = GaugeMetricFamily("cctv_camera_stored_bytes", "bytes of the camera's segments on disk",
                                   labels=["camera"])
        stored_n = GaugeMetricFamily("cctv_camera_stored_segments", "segments of the camera on disk",
                                     labels=["camera"])
        totals = cat.totals()
        for name in names:
            n, b = totals.get(name, (0, 0))
            stored.add_metric([name], b)
            stored_n.add_metric([name], n)
        recorded = CounterMetricFamily("cctv_camera_recorded_seconds",
                                       "seconds of footage finished since the daemon started", labels=["camera"])
        recorded_bytes = CounterMetricFamily("cctv_camera_recorded_bytes",
                                             "bytes of footage finished since the daemon started", labels=["camera"])
        sums = cat.recorded_since(now, started_at)
        for name in names:
            sec, size = sums.get(name, (0.0, 0))
            recorded.add_metric([name], max(0.0, sec))
            recorded_bytes.add_metric([name], size)
        wall = CounterMetricFamily("cctv_wall_seconds", "seconds since the daemon started (compare with "
                                   "cctv_camera_recorded_seconds)")
        wall.add_metric([], max(0.0, now - started_at))
        yield from (stored, stored_n, recorded, recorded_bytes, wall)
        uploads = GaugeMetricFamily("cctv_uploads", "segments by upload state (uploaded, pending, failed...)",
                                    labels=["result"])
        for st, count in cat.upload_state_counts().items():
            uploads.add_metric([st], float(count))
        yield uploads

    def _components(self, comps: Mapping[str, Any], disk: Mapping[str, Any]) -> Iterator[Metric]:
        up = comps.get("uploader")
        depth = GaugeMetricFamily("cctv_upload_queue_depth", "segments waiting for upload")
        if isinstance(up, Mapping) and isinstance(up.get("queue_length"), int):
            depth.add_metric([], up["queue_length"])
        yield depth
        ret = comps.get("retention")
        deleted = CounterMetricFamily("cctv_deletions", "segments deleted by retention since the daemon started",
                                      labels=["reason"])
        lost = CounterMetricFamily("cctv_footage_lost_segments", "segments deleted before their upload was "
                                   "verified (footage that exists nowhere else)")
        deleted_bytes = CounterMetricFamily("cctv_deleted_bytes", "bytes deleted by retention")
        if isinstance(ret, Mapping):
            for reason, n in dict(ret.get("deletedByReason") or {}).items():
                deleted.add_metric([str(reason)], n)
            lost.add_metric([], ret.get("unuploadedDeleted") or 0)
            deleted_bytes.add_metric([], ret.get("deletedBytes") or 0)
        yield from (deleted, lost, deleted_bytes)
        used = GaugeMetricFamily("cctv_disk_used_bytes", "bytes used on the recordings' disk")
        free = GaugeMetricFamily("cctv_disk_free_bytes", "bytes free on the recordings' disk")
        if isinstance(disk.get("used_bytes"), int):
            used.add_metric([], disk["used_bytes"])
        if isinstance(disk.get("free_bytes"), int):
            free.add_metric([], disk["free_bytes"])
        yield from (used, free)


def _fleet(fleet: Any, names: list[str]) -> Iterator[Metric]:
    """With a fleet: cameras no node holds a lease on (an alarm), and whether the lease database answers."""
    if not isinstance(fleet, Mapping):
        return
    unowned = GaugeMetricFamily("cctv_camera_unowned", "1 when no node of the fleet holds the camera's lease "
                                "(nobody records it)", labels=["camera"])
    missing = set(fleet.get("unowned") or ())
    for name in names:
        unowned.add_metric([name], 1.0 if name in missing else 0.0)
    held = GaugeMetricFamily("cctv_camera_lease_held", "1 when this node holds the camera's lease", labels=["camera"])
    mine = set(fleet.get("held") or ())
    for name in names:
        held.add_metric([name], 1.0 if name in mine else 0.0)
    up = GaugeMetricFamily("cctv_fleet_database_up", "1 when the last lease round reached the shared database")
    up.add_metric([], 1.0 if fleet.get("db_ok") else 0.0)
    yield from (unowned, held, up)


def render(ctx: ApiContext) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(ctx))
    return generate_latest(registry), CONTENT_TYPE_LATEST
