"""Commands on one camera, executed by the main loop: start_camera, stop_camera, record (for N minutes, then
stop). A camera is named as in the config; a configured but disabled (or stopped) camera can be started or recorded.
A camera stopped by command stays listed as `stopped` until a start, a record, or a reload that changes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from cctv_daemon.config.model import CameraConfig
from cctv_daemon.recording.camera import Camera, State
from cctv_daemon.service.commands import Args, CommandError

if TYPE_CHECKING:
    from cctv_daemon.service.daemon import Daemon

log = structlog.get_logger("cctv_daemon.commands")

MAX_RECORD_MINUTES = 24 * 60


def _config_of(daemon: Daemon, args: Args) -> CameraConfig:
    name = args.get("camera")
    if not isinstance(name, str) or not name:
        raise CommandError('missing "camera" (a camera name from the config)')
    for cam_cfg in daemon.config.cameras:
        if cam_cfg.cameraName == name:
            return cam_cfg
    known = ", ".join(cam.cameraName for cam in daemon.config.cameras) or "none"
    raise CommandError(f"unknown camera {name!r} (configured: {known})")


def _state(cam: Camera) -> dict[str, Any]:
    return {"camera": cam.name, "state": cam.state.value}


def _start(daemon: Daemon, cam_cfg: CameraConfig) -> Camera:
    cam = daemon.cameras.get(cam_cfg.cameraName)
    if cam is None:
        return daemon.add_camera(cam_cfg)
    if cam.state == State.STOPPING:
        raise CommandError(f"camera {cam.name!r} is stopping; try again once it has stopped")
    cam.start()  # no-op when it is already running
    return cam


def register_camera_commands(daemon: Daemon) -> None:
    def start_camera(args: Args) -> dict[str, Any]:
        daemon.refuse_if_stopping()
        cam_cfg = _config_of(daemon, args)
        daemon.record_until.pop(cam_cfg.cameraName, None)  # started: records until stopped
        log.info("camera_start_command", camera=cam_cfg.cameraName)
        return _state(_start(daemon, cam_cfg))

    def stop_camera(args: Args) -> dict[str, Any]:
        daemon.refuse_if_stopping()
        cam_cfg = _config_of(daemon, args)
        cam = daemon.cameras.get(cam_cfg.cameraName)
        if cam is None:
            raise CommandError(f"camera {cam_cfg.cameraName!r} is not running")
        daemon.record_until.pop(cam.name, None)
        log.info("camera_stop_command", camera=cam.name)
        cam.stop()
        return _state(cam)

    def record(args: Args) -> dict[str, Any]:
        daemon.refuse_if_stopping()
        cam_cfg = _config_of(daemon, args)
        minutes = args.get("minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 < minutes <= MAX_RECORD_MINUTES:
            raise CommandError(f'"minutes" must be a number > 0 and <= {MAX_RECORD_MINUTES} (got {minutes!r})')
        cam = daemon.cameras.get(cam_cfg.cameraName)
        running = cam is not None and cam.state not in (State.STOPPED, State.STOPPING)
        if running and cam_cfg.cameraName not in daemon.record_until:
            raise CommandError(f"camera {cam_cfg.cameraName!r} is already recording continuously")
        cam = _start(daemon, cam_cfg)
        daemon.record_until[cam.name] = daemon.clock.monotonic() + minutes * 60
        until = daemon.clock.time() + minutes * 60
        log.info("record_command", camera=cam.name, minutes=minutes)
        return {**_state(cam), "until": until}

    daemon.commands.register("start_camera", start_camera)
    daemon.commands.register("stop_camera", stop_camera)
    daemon.commands.register("record", record)
