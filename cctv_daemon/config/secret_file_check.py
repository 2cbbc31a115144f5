"""Warn at startup when the config file holds secrets and other users can read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

from cctv_daemon.config.model import Config

log = structlog.get_logger("cctv_daemon.config")

OTHERS_READ = stat.S_IRGRP | stat.S_IROTH  # 0o044


def warn_if_secrets_readable(config: Config, path: Path | None = None) -> bool:
    """Log ``config_file_readable_by_others`` (file and mode, never the secrets) and return True when the
    config holds a password or awsCredentials and its mode lets group/others read it (POSIX only)."""
    path = path or config.path
    if os.name != "posix" or path is None or not config.secrets():
        return False
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return False
    if mode & OTHERS_READ == 0:
        return False
    log.warning(
        "config_file_readable_by_others",
        file=str(path),
        mode=oct(mode),
        hint=f"it holds secrets: chmod 600 {path}",
    )
    return True
