"""Cameras stopped by command (API or CLI) stay stopped across daemon restarts, until started again or until
their config changes: {stateDir}/camera-choices.json maps a stopped camera's name to a fingerprint of its config
(a hash of its settings without secrets). Read at start; written on the main loop by stop/start commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import structlog

from cctv_daemon.config.model import CameraConfig
from cctv_daemon.core import constants as c
from cctv_daemon.service.status import write_atomic

log = structlog.get_logger("cctv_daemon.commands")


def fingerprint(cam_cfg: CameraConfig) -> str:
    return hashlib.sha256(repr(cam_cfg).encode()).hexdigest()[:32]  # repr shows no url, no password


class CameraChoices:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / c.CAMERA_CHOICES_FILENAME
        self.stopped: dict[str, str] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.stopped = {str(k): str(v) for k, v in data.get("stopped", {}).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("camera_choices_unreadable", path=str(self.path), error=str(exc), action="ignored")

    def is_stopped(self, cam_cfg: CameraConfig) -> bool:
        return self.stopped.get(cam_cfg.cameraName) == fingerprint(cam_cfg)

    def set_stopped(self, cam_cfg: CameraConfig, stopped: bool) -> None:
        before = dict(self.stopped)
        if stopped:
            self.stopped[cam_cfg.cameraName] = fingerprint(cam_cfg)
        else:
            self.stopped.pop(cam_cfg.cameraName, None)
        if before != self.stopped:
            try:
                write_atomic(self.path, {"stopped": self.stopped})
            except OSError as exc:
                log.warning("camera_choices_not_saved", path=str(self.path), error=str(exc))
