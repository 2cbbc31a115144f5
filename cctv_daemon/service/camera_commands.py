"""Commands on one camera, executed by the main loop: start_camera, stop_camera, record (for N minutes, then
stop). A camera is named as in the config; a configured but disabled (or stopped) camera can be started or recorded.
A camera stopped by command stays listed as `stopped` until a start, a record, or a reload that changes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from cctv_daemon.catalog import labels
from cctv_daemon.config.model import CameraConfig
from cctv_daemon.recording.camera import Camera, State
from cctv_daemon.service.commands import Args, CommandError

if TYPE_CHECKING:
    from cctv_daemon.service.daemon import Daemon

log = structlog.get_logger("cctv_daemon.commands")

MAX_RECORD_MINUTES = 24 * 60
MAX_LABEL_CHARS = 200


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
    if daemon.gate is not None and (why := daemon.gate.refusal(cam_cfg.cameraName)):
        raise CommandError(why)  # another node holds its lease: it records there
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
        daemon.record_labels.pop(cam_cfg.cameraName, None)
        daemon.choices.set_stopped(cam_cfg, False)
        log.info("camera_start_command", camera=cam_cfg.cameraName)
        return _state(_start(daemon, cam_cfg))

    def stop_camera(args: Args) -> dict[str, Any]:
        daemon.refuse_if_stopping()
        cam_cfg = _config_of(daemon, args)
        daemon.choices.set_stopped(cam_cfg, True)  # stays stopped across restarts until started again
        cam = daemon.cameras.get(cam_cfg.cameraName)
        if cam is None:
            raise CommandError(f"camera {cam_cfg.cameraName!r} is not running")
        daemon.record_until.pop(cam.name, None)
        daemon.record_labels.pop(cam.name, None)
        labels.end_active(daemon.storage.catalog, cam.name, daemon.clock.time())
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
        label = args.get("label")
        if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_CHARS):
            raise CommandError(f'"label" must be a string of at most {MAX_LABEL_CHARS} characters')
        cam = _start(daemon, cam_cfg)
        now_m, now = daemon.clock.monotonic(), daemon.clock.time()
        # a second request extends to the later end (never shortens)
        end_m = max(daemon.record_until.get(cam.name, now_m), now_m + minutes * 60)
        daemon.record_until[cam.name] = end_m
        until = now + (end_m - now_m)
        if label:
            daemon.record_labels[cam.name] = label
        who = args.get("who")
        rec = labels.add(daemon.storage.catalog, cam.name, label or None, now, now + minutes * 60,
                         who if isinstance(who, str) else None)
        log.info("record_command", camera=cam.name, minutes=minutes, label=label, until=until)
        return {**_state(cam), "until": until, "recording_id": rec.id, "label": label or None}

    daemon.commands.register("start_camera", start_camera)
    daemon.commands.register("stop_camera", stop_camera)
    daemon.commands.register("record", record)


def register_catalog_commands(daemon: Daemon) -> None:
    """Catalog changes asked for through the API, executed on the main loop: deleting one segment (through the
    catalog's one deletion path) and marking a labelled recording keep."""

    def delete_segment(args: Args) -> dict[str, Any]:
        path = args.get("path")
        if not isinstance(path, str) or not path:
            raise CommandError('missing "path"')
        if not daemon.storage.delete_segment(path, str(args.get("reason") or "deleted on request")):
            raise CommandError("no such segment")
        return {"deleted": True}

    def keep_recording(args: Args) -> dict[str, Any]:
        rid, keep = args.get("id"), args.get("keep")
        if not isinstance(rid, int) or not isinstance(keep, bool):
            raise CommandError('"id" (integer) and "keep" (boolean) are needed')
        rec = labels.set_keep(daemon.storage.catalog, rid, keep)
        if rec is None:
            raise CommandError("no such recording")
        return rec.to_dict()

    daemon.commands.register("delete_segment", delete_segment)
    daemon.commands.register("keep_recording", keep_recording)
