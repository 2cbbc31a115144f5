"""What the API's routes may use: the published snapshot (read), the command queue (to act), its OWN catalog
connection (reads; SQLite WAL: never blocks the recorder's writes), the event broker, the audit log and the
credentials. Never the daemon's live objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cctv_daemon.api.audit import AuditLog
from cctv_daemon.api.auth import Tokens, UsedNonces
from cctv_daemon.api.events_stream import EventBroker
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.config.model import Config
from cctv_daemon.service.commands import CommandFailed, CommandQueue
from cctv_daemon.service.snapshot import Snapshot

COMMAND_TIMEOUT_S = 10.0


@dataclass
class ApiContext:
    config: Config
    ffmpeg_exe: str
    tokens: Tokens
    snapshot: Callable[[], Snapshot]
    commands: CommandQueue
    catalog: Catalog
    broker: EventBroker
    audit: AuditLog
    api_status: Callable[[], dict[str, Any]]
    nonces: UsedNonces = field(default_factory=UsedNonces)
    presign: Callable[[str], str | None] = lambda _key: None  # S3 key -> presigned GET URL (with s3Config)
    download: Callable[[str, Path], None] | None = None  # S3 key -> a file (with s3Config; exports of other nodes)

    @property
    def state_dir(self) -> Path:
        return self.config.storageConfig.state_dir

    def call(self, name: str, args: dict[str, Any]) -> Any:
        """A command executed by the main loop; raises CommandFailed (refused) or CommandTimeout."""
        return self.commands.call(name, args, timeout=COMMAND_TIMEOUT_S)

    def camera_names(self) -> list[str]:
        return [cam.cameraName for cam in self.config.cameras]


__all__ = ["ApiContext", "CommandFailed"]
