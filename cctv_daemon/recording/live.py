"""The live view's files: where a camera's HLS playlist and fragments go, and which names exist there.

The recording ffmpeg writes them through a second, isolated output of its tee muxer (ffmpeg_command.py): a few
one-second fMP4 fragments and a playlist, in a tmpfs folder ($XDG_RUNTIME_DIR, else /dev/shm), so they cost no disk
writes and vanish at reboot. The folder is per daemon (a hash of its state folder: several daemons on one machine
never share one) and per camera. The API (api/routes_live.py) serves only names matching LIVE_FILE from it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from cctv_daemon.config.model import CameraConfig, Config
from cctv_daemon.segments import durable

PLAYLIST = "live.m3u8"
INIT = "init.mp4"  # ffmpeg's hls muxer default name for the fMP4 init segment, next to the playlist
FRAGMENT_PATTERN = "live%d.m4s"
LIVE_FILE = re.compile(r"^(live\.m3u8|init\.mp4|live\d{1,20}\.m4s)$")  # everything the API may serve
HLS_TIME_S = 1  # target fragment length (fragments are cut on keyframes: a camera's GOP may make them longer)
HLS_LIST_SIZE = 4  # fragments in the playlist; ffmpeg deletes older ones (about 6 files on disk per camera)


def enabled(config: Config, cam: CameraConfig) -> bool:
    """Live view for this camera: only with the API on; the camera's own `liveView`, else `api.liveView`."""
    if not config.api.enabled:
        return False
    return cam.liveView if cam.liveView is not None else config.api.liveView


def root_dir(config: Config) -> Path:
    """{liveDir or tmpfs}/cctv-daemon-{uid}/{hash of stateDir}: one folder per daemon."""
    if config.api.liveDir is not None:
        base = config.api.liveDir
    else:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime and os.path.isdir(runtime):
            base = Path(runtime)
        elif sys.platform != "win32" and os.path.isdir("/dev/shm"):
            base = Path("/dev/shm")
        else:
            base = Path(tempfile.gettempdir())
    uid = os.getuid() if hasattr(os, "getuid") else 0
    key = hashlib.sha256(str(config.storageConfig.state_dir.resolve()).encode()).hexdigest()[:12]
    return base / f"cctv-daemon-{uid}" / key


def camera_dir(config: Config, cam: CameraConfig) -> Path:
    return root_dir(config) / cam.cameraName


def prepare(folder: Path) -> Path:
    """Make the camera's live folder empty and ours (0700; a folder of this name owned by someone else, or a
    symlink, is refused). Raises OSError: the caller records without live view then."""
    for d in (folder.parent.parent, folder.parent):
        d.mkdir(exist_ok=True, mode=0o700)
        _check_ours(d)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)  # the previous run's fragments: a new run starts numbering again
    folder.mkdir(mode=0o700)
    durable.fsync_only_on(folder)  # on the recording disk, a syncfs per segment would write every fragment
    return folder


def _check_ours(d: Path) -> None:
    st = d.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{d} is not a folder")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise OSError(f"{d} belongs to another user")
