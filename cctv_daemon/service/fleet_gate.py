"""The main loop's side of the camera leases (fleet/lease_manager.py runs the lease thread): a camera records on
this node only while the lease view says it is ours. Read each tick from the manager's published view (one
reference, no lock, no I/O): a camera that is no longer ours is stopped at once (its ffmpeg finalizes the segment),
a camera that becomes ours is started as it would be at startup (enabled, not on-demand, not stopped by command;
or under a running `record` command). Cameras waiting for their lease are listed as ``standby`` with the node that
holds it. The loop tells the manager each tick which cameras still run, so that a hand-back is released only once
the camera has stopped (never two nodes recording at once)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from cctv_daemon.config.model import CameraConfig
from cctv_daemon.fleet.lease_manager import CameraLease, LeaseManager
from cctv_daemon.recording.camera import State
from cctv_daemon.service.snapshot import CameraSnapshot

if TYPE_CHECKING:
    from cctv_daemon.service.daemon import Daemon

log = structlog.get_logger("cctv_daemon.fleet")

STANDBY = "standby"


class FleetGate:
    def __init__(self, daemon: Daemon, manager: LeaseManager) -> None:
        self.daemon = daemon
        self.manager = manager
        self.paused: dict[str, float] = {}  # camera -> since (wall): would record, but the lease is not ours

    def allows(self, cam_cfg: CameraConfig) -> bool:
        """Called where the daemon would start a camera on its own; False: it waits for its lease."""
        name = cam_cfg.cameraName
        if self.manager.mine(name):
            return True
        if name not in self.paused:
            self.paused[name] = self.daemon.clock.time()
            log.info("camera_waits_for_lease", camera=name, reason=self.reason(name))
        return False

    def refusal(self, name: str) -> str | None:
        """Why a start/record command must be refused here (None: the lease is ours)."""
        if self.manager.mine(name):
            return None
        return f"camera {name!r} is not recorded by this node: {self.reason(name)}"

    def reason(self, name: str) -> str:
        lease = self.manager.view.cameras.get(name)
        if lease is None:
            error = self.manager.view.error
            if error:  # never reached the database since the start: no lease, nothing recorded here
                return f"no lease: {error}"
            return "waiting for its lease (the lease thread has not reached the database yet)"
        return lease.reason

    def tick(self) -> None:
        d = self.daemon
        configured = {cam.cameraName for cam in d.config.cameras}
        for gone in [name for name in self.paused if name not in configured]:  # removed by a reload
            del self.paused[gone]
        for cam_cfg in d.config.cameras:
            name = cam_cfg.cameraName
            cam = d.cameras.get(name)
            if not self.manager.mine(name):
                if cam is not None and cam.state not in (State.STOPPED, State.STOPPING):
                    lease = self.manager.view.cameras.get(name)
                    log.warning("camera_stopped_by_lease", camera=name, reason=self.reason(name),
                                holder=lease.holder if lease else None)
                    cam.stop()
                    self.paused[name] = d.clock.time()
                elif cam is not None and cam.state == State.STOPPED and name in self.paused:
                    del d.cameras[name]  # listed as standby until the lease is ours again
                continue
            if name in self.paused and (cam is None or cam.state == State.STOPPED):
                del self.paused[name]
                d.cameras.pop(name, None)
                if name in d.record_until:
                    d.add_camera(cam_cfg)
                elif cam_cfg.enabled:
                    d.autostart_camera(cam_cfg)
        running = frozenset(n for n, cam in d.cameras.items() if cam.state != State.STOPPED)
        self.manager.offer(tuple(cam.cameraName for cam in d.config.cameras), running)

    def rows(self, cams: dict[str, CameraSnapshot]) -> dict[str, CameraSnapshot]:
        """The snapshot's camera rows with each camera's lease, plus a ``standby`` row per paused camera."""
        view = self.manager.view.cameras
        out: dict[str, CameraSnapshot] = {}
        for name, snap in cams.items():
            out[name] = snap.with_lease(_lease_dict(view.get(name)))
        for name, since in self.paused.items():
            if name not in out:
                lease = view.get(name)
                out[name] = CameraSnapshot(state=STANDBY, reason=self.reason(name), since=since,
                                           last_segment_at=None, segments=0, starts=0, reconnects=0, stalls=0,
                                           last_error=None, ffmpeg_pid=None, enabled=True,
                                           lease=_lease_dict(lease))
        return out


def _lease_dict(lease: CameraLease | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    return {"state": lease.state, "mine": lease.mine, "holder": lease.holder, "holder_shard": lease.holder_shard,
            "expires_at": lease.expires_at, "generation": lease.generation, "reason": lease.reason}
