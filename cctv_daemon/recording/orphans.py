"""Finding ffmpegs left behind by an earlier run of this daemon (it was SIGKILLed): matched precisely by the
staging folder in their command line, never "every ffmpeg on the machine"."""

from __future__ import annotations

from pathlib import Path

import psutil
import structlog

log = structlog.get_logger("cctv_daemon.orphans")


def find_orphans(staging_root: Path) -> list[psutil.Process]:
    marker = str(staging_root.resolve()) + "/"
    marker_alt = str(staging_root.resolve()) + "\\"
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            name = (proc.info["name"] or "").lower()
            cmdline = proc.info["cmdline"] or []
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "ffmpeg" not in name and not (cmdline and "ffmpeg" in Path(cmdline[0]).name.lower()):
            continue
        if any(arg.startswith((marker, marker_alt)) for arg in cmdline):
            found.append(proc)
    return found


def stop_orphans(staging_root: Path, timeout: float = 5.0) -> int:
    procs = find_orphans(staging_root)
    for proc in procs:
        log.warning("orphan_ffmpeg_stopped", pid=proc.pid)
        try:
            proc.terminate()  # SIGTERM: ffmpeg finalizes its segment first
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    return len(procs)
