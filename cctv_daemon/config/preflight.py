"""What `run` needs from this machine, checked by `check-config` and by `run` before it takes its lock: the
folders exist or can be created, and are writable; the log file can be opened; ``ffmpegPath`` is a program;
``minFreeDiskGB`` is not larger than the disk (config/disk_floor.py).

Each problem is one config error line naming its key. The checks leave nothing behind: a folder that does not
exist yet is probed by creating and removing a temporary folder in its nearest existing parent.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from cctv_daemon.config.disk_floor import floor_problems
from cctv_daemon.config.model import Config
from cctv_daemon.core import constants as c
from cctv_daemon.fleet.identity import FleetConfigError, FleetIdentity, identify, pod_name

_PROBE = ".cctv-check-"


def preflight(config: Config) -> list[str]:
    """Every problem `run` would meet with the folders, the log file and ffmpeg of ``config``."""
    errors: list[str] = []
    sc = config.storageConfig
    if problem := folder_problem(sc.savePath):
        errors.append(f"storageConfig.savePath: {problem}")
    if (sc.stateDir is not None or not errors) and (problem := folder_problem(sc.state_dir)):
        default = "" if sc.stateDir is not None else f" (stateDir defaults to {{savePath}}/{c.STATE_DIRNAME})"
        errors.append(f"storageConfig.stateDir: {problem}{default}")
    for i, cam in enumerate(config.cameras):
        folder = sc.savePath / cam.cameraName
        if os.path.lexists(folder) and not folder.is_dir():
            errors.append(f"cameras[{i}].cameraName: {folder} exists and is not a folder (recordings go there)")
    lc = config.logging
    if lc.fileEnabled and (lc.file is not None or not errors):
        log_file = lc.file or sc.state_dir / c.LOG_DIRNAME / c.LOG_FILENAME
        if problem := log_file_problem(log_file):
            errors.append(f"logging.file: {problem}")
    if not errors and (problem := floor_problems(config)[0]):
        errors.append(problem)
    if config.ffmpegPath and (problem := ffmpeg_problem(config.ffmpegPath)):
        errors.append(f"ffmpegPath: {problem}")
    try:  # the shard may come from this pod's name (cctv-3): a property of the machine, checked here
        node_identity(config)
    except FleetConfigError as exc:
        errors.append(str(exc))
    return errors


def node_identity(config: Config) -> FleetIdentity:
    """This node's shard and id from ``fleet`` (fleet/identity.py); FleetConfigError names the key."""
    fc = config.fleet
    return identify(fc.shards, fc.shard, fc.nodeId)


def catalog_node_id(config: Config) -> str:
    """The node id every catalog row of this daemon carries and its leases name: `fleet.nodeId`, else the pod
    name or host name (cctv_daemon/fleet/identity.py). The one place the node id is chosen. A shard that cannot
    be resolved is `run`'s config error (preflight); other commands only need the id."""
    try:
        return node_identity(config).node_id
    except FleetConfigError:
        return config.fleet.nodeId or pod_name()


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as a writable folder, or None."""
    try:
        if path.is_dir():
            fd, probe = tempfile.mkstemp(prefix=_PROBE, dir=path)
            os.close(fd)
            os.unlink(probe)
            return None
        if os.path.lexists(path):
            return f"{path} exists and is not a folder"
        parent = next(p for p in path.parents if os.path.lexists(p))
        if not parent.is_dir():
            return f"{path} cannot be created: {parent} is a file, not a folder"
    except OSError as exc:
        return f"{path} is not writable: {exc.strerror or exc}"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=_PROBE, dir=parent))
    except OSError as exc:
        return f"{path} cannot be created: {exc.strerror or exc} (in {parent})"
    return None


def log_file_problem(path: Path) -> str | None:
    """Why the log file ``path`` cannot be opened for appending, or None."""
    try:
        if path.is_dir():
            return f"{path} is a folder; give the path of a file"
        if os.path.lexists(path):
            if not stat.S_ISREG(path.stat().st_mode):
                return f"{path} is not a regular file"
            with open(path, "ab"):
                return None
    except OSError as exc:
        return f"{path} cannot be opened for writing: {exc.strerror or exc}"
    problem = folder_problem(path.parent)
    return f"its folder: {problem}" if problem else None


def ffmpeg_problem(configured: str) -> str | None:
    """Why ``ffmpegPath`` does not name a program that can be run, or None."""
    if os.sep not in configured and not (os.altsep and os.altsep in configured):
        return None if shutil.which(configured) else f'"{configured}" is not a program on PATH'
    p = Path(configured)
    if not p.exists():
        return f'"{configured}" does not exist'
    if not p.is_file():
        return f'"{configured}" is not a file'
    if not os.access(p, os.X_OK):
        return f'"{configured}" is not executable (mode {stat.S_IMODE(p.stat().st_mode):o}; chmod +x it)'
    return None
