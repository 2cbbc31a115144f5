"""The configuration: its typed model and the loader that validates a config.json.

Every error of a file is collected and reported at once, each naming its JSON path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cctv_daemon import constants as c

SourceKind = Literal["rtsp", "webcam", "test"]
AudioMode = Literal["auto", "copy", "aac", "none"]


class ConfigError(Exception):
    """A config file with one or more errors; ``errors`` holds one line per error, each naming its JSON path."""

    def __init__(self, errors: list[str], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        super().__init__(f"{source}: {len(errors)} error(s):\n" + "\n".join(f"  {e}" for e in errors))


@dataclass(frozen=True)
class CameraConfig:
    cameraName: str
    videoFeedId: str
    source: SourceKind = "rtsp"
    url: str | None = None  # full URL; credentials from userName/password are inserted
    ipAddress: str | None = None
    port: int = c.DEFAULT_RTSP_PORT
    path: str = "/"
    userName: str | None = None
    password: str | None = field(default=None, repr=False)
    device: str | None = None  # webcam: /dev/video0 (v4l2) or "Integrated Camera" (dshow)
    enabled: bool = True
    frameRate: float | None = None
    resolution: str | None = None  # "WIDTHxHEIGHT"
    videoDuration: int = c.DEFAULT_VIDEO_DURATION_S
    audio: AudioMode = "auto"
    stallTimeout: float = c.DEFAULT_STALL_TIMEOUT_S
    maxStorageGB: float | None = None  # per-camera cap (retention)

    @property
    def transcodes(self) -> bool:
        return self.frameRate is not None or self.resolution is not None


@dataclass(frozen=True)
class S3Config:
    s3Bucket: str
    s3Path: str = ""
    endpointUrl: str | None = None
    region: str | None = None
    addressingStyle: Literal["auto", "path", "virtual"] = "auto"
    storageClass: str | None = None
    serverSideEncryption: str | None = None  # "AES256" or "aws:kms"
    sseKmsKeyId: str | None = None
    maxConcurrentUploads: int = c.DEFAULT_MAX_CONCURRENT_UPLOADS
    bandwidthLimitMBps: float | None = None
    multipartThresholdMB: int = c.DEFAULT_MULTIPART_THRESHOLD_MB


@dataclass(frozen=True)
class AwsCredentials:
    accessKeyId: str = field(repr=False)
    secretAccessKey: str = field(repr=False)
    sessionToken: str | None = field(default=None, repr=False)
    region: str | None = None


@dataclass(frozen=True)
class StorageConfig:
    savePath: Path
    clearAfterUpload: bool = False
    clearWhenFilePathReachGB: float | None = None
    retentionDays: float | None = None
    minFreeDiskGB: float = c.DEFAULT_MIN_FREE_GB
    stateDir: Path | None = None  # default: {savePath}/.cctv

    @property
    def state_dir(self) -> Path:
        return self.stateDir if self.stateDir is not None else self.savePath / c.STATE_DIRNAME


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    file: Path | None = None  # default: {stateDir}/logs/cctv-daemon.log
    maxBytes: int = c.DEFAULT_LOG_MAX_BYTES
    backupCount: int = c.DEFAULT_LOG_BACKUP_COUNT
    fileEnabled: bool = True


@dataclass(frozen=True)
class SupervisorConfig:
    backoffBase: float = c.DEFAULT_BACKOFF_BASE_S
    backoffCap: float = c.DEFAULT_BACKOFF_CAP_S
    steadyAfter: float = c.DEFAULT_STEADY_AFTER_S
    stopTimeout: float = c.DEFAULT_STOP_TIMEOUT_S


@dataclass(frozen=True)
class Config:
    cameras: tuple[CameraConfig, ...]
    storageConfig: StorageConfig
    s3Config: S3Config | None = None
    awsCredentials: AwsCredentials | None = None
    logging: LoggingConfig = LoggingConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    ffmpegPath: str | None = None
    path: Path | None = None  # the file it was read from

    def secrets(self) -> list[str]:
        """Every secret value in this config, for redaction."""
        out = [cam.password for cam in self.cameras if cam.password]
        if self.awsCredentials:
            out += [self.awsCredentials.secretAccessKey, self.awsCredentials.accessKeyId]
            if self.awsCredentials.sessionToken:
                out.append(self.awsCredentials.sessionToken)
        return [s for s in out if s]


def load_config(path: str | Path) -> Config:
    """Read and validate a config file. Raises ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror}"], str(p)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"], str(p)) from None
    return parse_config(data, source=str(p), base_dir=p.resolve().parent, config_path=p.resolve())


def parse_config(
    data: Any, source: str = "config", base_dir: Path | None = None, config_path: Path | None = None
) -> Config:
    """Validate already-decoded JSON. TEMPORARY minimal version: replaced by the full validator."""
    base = base_dir or Path.cwd()
    cams = tuple(
        CameraConfig(**{k: v for k, v in cam.items()}) for cam in data["cameras"]
    )
    st = dict(data["storageConfig"])
    save = Path(st.pop("savePath"))
    storage = StorageConfig(savePath=save if save.is_absolute() else base / save, **st)
    s3 = S3Config(**data["s3Config"]) if "s3Config" in data else None
    aws = AwsCredentials(**data["awsCredentials"]) if "awsCredentials" in data else None
    return Config(cameras=cams, storageConfig=storage, s3Config=s3, awsCredentials=aws,
                  ffmpegPath=data.get("ffmpegPath"), path=config_path)
