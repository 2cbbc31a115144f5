"""The daemon's "check" command: `cctv-daemon check --repair` / `--rebuild` while the daemon runs are done here,
inside it, so that a repair never races the daemon's own writes. The work runs on its own thread (a rebuild of a
large catalog must not hold up the main loop): "check" starts a job and answers its id at once, "check_result"
answers {"done": false} until the job has finished, then its report (catalog/check.py run_check)."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

import structlog

from cctv_daemon.catalog import check as catalog_check
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.service.commands import Args, CommandError, CommandQueue

log = structlog.get_logger("cctv_daemon.check")

MAX_JOBS_KEPT = 8


class CheckJobs:
    def __init__(self, catalog: Catalog, state_dir: Path, ffmpeg_exe: str) -> None:
        self.catalog = catalog
        self.state_dir = state_dir
        self.ffmpeg_exe = ffmpeg_exe
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._running = threading.Lock()  # one check at a time

    def register(self, commands: CommandQueue) -> None:
        commands.register("check", self.start)
        commands.register("check_result", self.result)

    def start(self, args: Args) -> dict[str, Any]:
        job = secrets.token_hex(6)
        with self._lock:
            while len(self._jobs) >= MAX_JOBS_KEPT:
                self._jobs.pop(next(iter(self._jobs)))
            self._jobs[job] = {"done": False}
        repair, rebuild = bool(args.get("repair")), bool(args.get("rebuild"))
        threading.Thread(target=self._run, args=(job, repair, rebuild), name="check", daemon=True).start()
        log.info("check_command", job=job, repair=repair, rebuild=rebuild)
        return {"job": job}

    def result(self, args: Args) -> dict[str, Any]:
        with self._lock:
            state = self._jobs.get(str(args.get("job")))
        if state is None:
            raise CommandError(f"unknown check job {args.get('job')!r}")
        return dict(state)

    def _run(self, job: str, repair: bool, rebuild: bool) -> None:
        with self._running:
            try:
                report: dict[str, Any] = catalog_check.run_check(
                    self.catalog, self.state_dir, repair_found=repair, rebuild=rebuild, ffmpeg_exe=self.ffmpeg_exe)
                state = {"done": True, "report": report}
            except Exception as exc:
                log.exception("check_command_failed", job=job)
                state = {"done": True, "error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            self._jobs[job] = state
