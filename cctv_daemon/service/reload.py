"""Config reload (SIGHUP or `cctv-daemon reload`): re-read config.path and apply the camera changes without
touching cameras whose settings did not change (same Camera, same ffmpeg, no gap). Added cameras start,
removed ones stop gracefully (dropped once stopped), changed ones stop and then start with the new settings.
An invalid file is rejected as a whole (one event listing every error) and the running config stays.
Storage, S3, credentials, logging, supervisor and ffmpegPath changes are not applied: "needs restart"."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from cctv_daemon.config.model import CameraConfig, Config, ConfigError, load_config
from cctv_daemon.core.redact import redact, register_secrets
from cctv_daemon.recording.camera import State

if TYPE_CHECKING:
    from cctv_daemon.service.daemon import Daemon

log = structlog.get_logger("cctv_daemon.reload")

RESTART_SECTIONS = ("storageConfig", "s3Config", "awsCredentials", "logging", "supervisor", "ffmpegPath", "api")


@dataclass
class CameraDiff:
    added: list[CameraConfig] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[CameraConfig] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def diff_cameras(old: Config, new: Config) -> CameraDiff:
    """Compare enabled cameras by name (a camera that became disabled counts as removed)."""
    before = {cam.cameraName: cam for cam in old.cameras if cam.enabled}
    after = {cam.cameraName: cam for cam in new.cameras if cam.enabled}
    d = CameraDiff()
    for name, cam in after.items():
        if name not in before:
            d.added.append(cam)
        elif before[name] != cam:
            d.changed.append(cam)
        else:
            d.unchanged.append(name)
    d.removed = [name for name in before if name not in after]
    return d


def needs_restart(old: Config, new: Config) -> list[str]:
    return [s for s in RESTART_SECTIONS if getattr(old, s) != getattr(new, s)]


class ConfigReloader:
    """Daemon component. reload() is called from the main loop (signal or control request); tick() finishes
    the replacement of changed cameras once their old ffmpeg has stopped."""

    name = "reload"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.pending: dict[str, CameraConfig] = {}  # camera name -> config to start once the old one stopped
        self.removing: set[str] = set()
        self.last: dict[str, Any] = {}

    def start(self) -> None:
        pass

    def reload(self) -> bool:
        try:
            return self._reload()
        except Exception:  # a reload must never take the recording loop down
            log.exception("reload_failed", action="keeping the running config")
            return False

    def _reload(self) -> bool:
        d = self.daemon
        path = d.config.path
        if path is None:
            log.warning("reload_rejected", reason="config was not read from a file")
            return False
        try:
            new = load_config(path)
        except ConfigError as exc:
            log.error("reload_rejected", config=str(path), errors=[redact(e) for e in exc.errors],
                      action="keeping the running config")
            self.last = {"at": d.clock.time(), "ok": False, "errors": len(exc.errors)}
            return False
        register_secrets(new.secrets())
        restart = needs_restart(d.config, new)
        diff = diff_cameras(d.config, new)
        # Keep the sections that are not applied live, so that a later diff compares like with like.
        d.config = dataclasses.replace(new, **{s: getattr(d.config, s) for s in RESTART_SECTIONS})
        for name in diff.removed:
            self.pending.pop(name, None)
            self._retire(name)
        for cam_cfg in diff.changed:
            self.pending[cam_cfg.cameraName] = cam_cfg
            self._retire(cam_cfg.cameraName)
        for cam_cfg in diff.added:
            if cam_cfg.cameraName in d.cameras:  # still stopping from an earlier reload
                self.pending[cam_cfg.cameraName] = cam_cfg
            else:
                d.autostart_camera(cam_cfg)
        for cam_cfg in new.cameras:
            if not cam_cfg.enabled and cam_cfg.cameraName not in diff.removed:
                log.info("camera_disabled", camera=cam_cfg.cameraName)
        if restart:
            log.warning("reload_needs_restart", sections=restart,
                        action="not applied until the daemon restarts")
        log.info("config_reloaded", config=str(path), added=[cam.cameraName for cam in diff.added],
                 removed=diff.removed, changed=[cam.cameraName for cam in diff.changed],
                 unchanged=diff.unchanged)
        self.last = {"at": d.clock.time(), "ok": True, "added": [cam.cameraName for cam in diff.added],
                     "removed": diff.removed, "changed": [cam.cameraName for cam in diff.changed],
                     "needs_restart": restart}
        self.tick()
        return True

    def _retire(self, name: str) -> None:
        cam = self.daemon.cameras.get(name)
        if cam is None:
            return
        cam.stop()  # it stays in daemon.cameras (ticked, shown as stopping) until STOPPED
        self.removing.add(name)

    def tick(self) -> None:
        cams = self.daemon.cameras
        for name in list(self.removing):
            cam = cams.get(name)
            if cam is not None and cam.state != State.STOPPED:
                continue
            self.removing.discard(name)
            cams.pop(name, None)
            log.info("camera_removed", camera=name)
            new_cfg = self.pending.pop(name, None)
            if new_cfg is not None:
                self.daemon.autostart_camera(new_cfg)

    def stop(self) -> None:
        self.pending.clear()

    def status(self) -> dict[str, Any]:
        return {"last_reload": self.last or None, "pending_restart": sorted(self.pending)}
