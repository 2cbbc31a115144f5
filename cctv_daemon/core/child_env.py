"""The environment a child ffmpeg gets: only what it needs, never the daemon's whole environment.

A camera password given as `"${GATE_PASSWORD}"` lives in the daemon's environment; a child inheriting it all
would expose it in /proc/<pid>/environ of every ffmpeg (readable by the same user, and by root tools that dump
environments). ffmpeg needs the search path, the locale and time zone, a home and temp folder, the dynamic
linker's path for a custom build (`ffmpegPath`), TLS trust settings for rtsps, and on Windows the system
folders (Winsock fails without SYSTEMROOT)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

_POSIX_KEEP = ("PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR", "LD_LIBRARY_PATH", "SSL_CERT_FILE",
               "SSL_CERT_DIR")
_WINDOWS_KEEP = ("PATH", "PATHEXT", "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "TEMP", "TMP", "TZ",
                 "USERPROFILE", "LOCALAPPDATA", "PROGRAMDATA", "NUMBER_OF_PROCESSORS",
                 "PROCESSOR_ARCHITECTURE", "SSL_CERT_FILE", "SSL_CERT_DIR")
# ffmpeg's stderr is parsed and logged: never colour codes in it.
_SET = {"AV_LOG_FORCE_NOCOLOR": "1"}


def ffmpeg_env(environ: Mapping[str, str] | None = None, windows: bool | None = None) -> dict[str, str]:
    """The environment for an ffmpeg child: the kept variables of ``environ`` (default os.environ), LC_*, and
    AV_LOG_FORCE_NOCOLOR."""
    source = os.environ if environ is None else environ
    is_windows = sys.platform == "win32" if windows is None else windows
    keep = _WINDOWS_KEEP if is_windows else _POSIX_KEEP
    wanted = {k.upper() for k in keep} if is_windows else set(keep)
    env = {}
    for key, value in source.items():
        name = key.upper() if is_windows else key
        if name in wanted or name.startswith("LC_"):
            env[key] = value
    env.update(_SET)
    return env
