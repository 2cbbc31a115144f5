"""The audit log: who stopped, started, recorded or deleted what, when. One JSON line per action in
{stateDir}/audit.jsonl (0600) and one log line. `who` is the role and how it signed in, never a token."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from cctv_daemon.core import constants as c

log = structlog.get_logger("cctv_daemon.audit")


class AuditLog:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / c.API_AUDIT_FILENAME
        self._lock = threading.Lock()

    def record(self, who: str, action: str, target: str, result: str, **details: Any) -> None:
        entry = {"time": time.time(), "who": who, "action": action, "target": target, "result": result, **details}
        log.info("audit", **entry)
        line = json.dumps(entry, default=str) + "\n"
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as f:
                    f.write(line)
            except OSError as exc:
                log.error("audit_write_failed", path=str(self.path), error=str(exc))
