"""Every Windows-only call of the service layer, in one small module so that the rest stays portable and
tests can replace these functions (they cannot run on Linux): byte-range locking with msvcrt and
registering a Task Scheduler task with schtasks. (ffmpeg's CTRL_BREAK stop lives in process_control.)"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

IS_WINDOWS = sys.platform == "win32"

# msvcrt locks byte ranges and a locked range cannot be read by others, so we lock one byte far past the
# pid/start-time text at the start of the lockfile: readers can still read that text.
LOCK_OFFSET = 1 << 20


def lock_nb(fd: int) -> bool:
    """Take the exclusive lock without waiting; False if another process holds it."""
    import msvcrt  # Windows only

    pos = os.lseek(fd, 0, os.SEEK_CUR)
    os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        return True
    except OSError:
        return False
    finally:
        os.lseek(fd, pos, os.SEEK_SET)


def unlock(fd: int) -> None:
    import msvcrt  # Windows only

    os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
    with contextlib.suppress(OSError):
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def schtasks_create(xml_file: Path, task_name: str) -> subprocess.CompletedProcess[str]:
    """Register (or replace) a scheduled task from its XML definition."""
    return subprocess.run(["schtasks", "/Create", "/XML", str(xml_file), "/TN", task_name, "/F"],
                          capture_output=True, text=True, check=False)


def pythonw_path(python_exe: str) -> str:
    """pythonw.exe next to python.exe (no console window); the same path if there is none."""
    if python_exe.lower().endswith(("\\python.exe", "/python.exe")):
        return python_exe[: -len("python.exe")] + "pythonw.exe"
    return python_exe
