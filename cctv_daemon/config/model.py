"""The configuration: pydantic models of config.json (keys exactly as users write them) and its loader.

Every error of a file is reported at once, each line starting with its JSON path: pydantic checks each value,
:mod:`checks` walks the file before (unknown keys, ``${ENV}``) and words the errors, :mod:`rules` checks what
involves several keys. Secrets are ``SecretStr``: code that needs one calls ``.get_secret_value()``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.json_schema import SkipJsonSchema

from cctv_daemon.config.checks import TOP_LEVEL, Collector, ConfigError, decode, describe, fail, kind, url_password
from cctv_daemon.config.rules import cross_checks
from cctv_daemon.core import constants as c

__all__ = ["ConfigError", "load_config", "parse_config"]

SourceKind = Literal["rtsp", "webcam", "test"]
AudioMode = Literal["auto", "copy", "aac", "none"]
RtspTransport = Literal["tcp", "udp", "auto"]
StorageClass = Literal["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER", "GLACIER_IR",
                       "DEEP_ARCHIVE", "REDUCED_REDUNDANCY"]

_HOST_RE = re.compile(r"[A-Za-z0-9_~%.-]+")


# -- value types: each rejects with a message that names the rule and shows the value safely ----------------
def _secret(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        fail("must be a non-empty string (got a string)")
    return value


def _matching(pattern: str, expected: str) -> AfterValidator:
    regex = re.compile(pattern)

    def check(value: str, info: ValidationInfo) -> str:
        if not regex.fullmatch(value):
            fail(f"must be {expected} (got {describe(value, info.field_name or '')})")
        return value

    return AfterValidator(check)


def _port_in_range(value: str) -> str:
    try:
        urlsplit(value).port  # noqa: B018  (raises ValueError when out of range)
    except ValueError:
        fail(f"has a port out of range 1-65535 (got {value!r})")
    return value


def valid_host(host: str) -> bool:
    """A DNS name / IPv4 address (letters, digits, ``. _ - ~ %``) or an IPv6 address, in brackets or not."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" not in bare:
        return bool(_HOST_RE.fullmatch(bare))
    try:
        ipaddress.IPv6Address(bare.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _host(value: str) -> str:
    if not valid_host(value):
        hint = ' (use "url" for a full URL)' if "://" in value else ""
        fail(f"must be a host name or IP address{hint} (got {describe(value, 'url')})")
    return value


def _url(value: str) -> str:
    shown = describe(value, "url")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        fail(f"is not a valid URL (got {shown})")
    if parts.scheme.lower() not in ("rtsp", "rtsps"):
        fail(f"must start with rtsp:// or rtsps:// (got {shown})")
    if not parts.hostname:
        fail(f"must include a host (got {shown})")
    if not valid_host(parts.hostname):
        fail(f"has an invalid host {describe(parts.hostname)} (letters, digits, '.', '-', '_' or an IP address)")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        fail(f"must not contain spaces or control characters (escape them, e.g. %20) (got {shown})")
    return value


def _prefix(value: Any) -> Any:
    if not isinstance(value, str):
        fail(f"must be a string (got {describe(value)})")
    return value.strip("/")


def _fs_path(value: Any, info: ValidationInfo) -> Any:
    """``~`` expanded; a relative path resolved against the config file's folder (context "base")."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value.strip():
        fail(f"must be a non-empty string (got {describe(value)})")
    p = Path(value).expanduser()
    base = (info.context or {}).get("base")
    return base / p if base is not None and not p.is_absolute() else p


Text = Annotated[StrictStr, _matching(r"(?s).*\S.*", "a non-empty string")]
Secret = Annotated[SecretStr, AfterValidator(_secret)]
Name = Annotated[Text, _matching(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}",
                                 '1-64 characters of A-Z a-z 0-9 . _ - not starting with "."')]
Bucket = Annotated[Text, _matching(r"(?!\d+\.\d+\.\d+\.\d+$)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
                                   "a valid S3 bucket name: 3-63 characters of lowercase letters, digits, '.' and"
                                   " '-', starting and ending with a letter or digit")]
Number = Annotated[float, Strict()]
FsPath = Annotated[Path, BeforeValidator(_fs_path)]
MODEL = ConfigDict(extra="forbid", allow_inf_nan=False, hide_input_in_errors=True,
                   field_title_generator=lambda name, _info: name)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


@dataclass(frozen=True, config=MODEL)
class CameraConfig:
    cameraName: Name
    videoFeedId: Name = Field(default="", json_schema_extra=_no_default)  # "" (not given): cameraName
    source: SourceKind = "rtsp"
    url: Annotated[Text, AfterValidator(_url)] | None = Field(default=None, repr=False)  # userName/password go into it
    ipAddress: Annotated[Text, AfterValidator(_host)] | None = None
    port: StrictInt = Field(default=c.DEFAULT_RTSP_PORT, ge=1, le=65535)
    path: Annotated[Text, AfterValidator(lambda p: p if p.startswith("/") else "/" + p)] = "/"
    userName: Text | None = None
    password: Secret | None = None
    device: Text | None = None  # webcam: /dev/video0 (v4l2) or "Integrated Camera" (dshow)
    enabled: StrictBool = True
    frameRate: Number | None = Field(default=None, gt=0, le=120)
    resolution: Annotated[Text, _matching(r"\d{2,5}x\d{2,5}", '"WIDTHxHEIGHT", e.g. "1280x720"')] | None = None
    videoDuration: StrictInt = Field(default=c.DEFAULT_VIDEO_DURATION_S, ge=1, le=86400)
    audio: AudioMode = "auto"
    stallTimeout: Number = Field(default=c.DEFAULT_STALL_TIMEOUT_S, ge=2)
    rtspTransport: RtspTransport = "tcp"  # auto: TCP, falling back to UDP for the run on "461 Unsupported transport"
    maxStorageGB: Number | None = Field(default=None, gt=0)  # per-camera cap (retention)
    mode: Literal["continuous", "onDemand"] = "continuous"  # onDemand: records only on a `record` command
    liveView: StrictBool | None = None  # None: api.liveView decides (recording/live.py)

    @model_validator(mode="after")
    def _feed_defaults_to_name(self) -> CameraConfig:
        if not self.videoFeedId:
            object.__setattr__(self, "videoFeedId", self.cameraName)
        return self

    @property
    def transcodes(self) -> bool:
        return self.frameRate is not None or self.resolution is not None


@dataclass(frozen=True, config=MODEL)
class S3Config:
    s3Bucket: Bucket
    s3Path: Annotated[str, BeforeValidator(_prefix)] = ""  # stored without leading/trailing "/"
    endpointUrl: Annotated[Text, _matching(r"https?://([^@/\s]*@)?([\w.~%-]+|\[[\da-fA-F:.]+\])(:\d{1,5})?([/?#]\S*)?",
                                           "an http:// or https:// URL"), AfterValidator(_port_in_range)] | None = None
    region: Text | None = None
    addressingStyle: Literal["auto", "path", "virtual"] = "auto"
    storageClass: StorageClass | None = None
    serverSideEncryption: Literal["AES256", "aws:kms"] | None = None
    sseKmsKeyId: Text | None = None
    maxConcurrentUploads: StrictInt = Field(default=c.DEFAULT_MAX_CONCURRENT_UPLOADS, ge=1, le=32)
    bandwidthLimitMBps: Number | None = Field(default=None, gt=0)
    multipartThresholdMB: StrictInt = Field(default=c.DEFAULT_MULTIPART_THRESHOLD_MB, ge=5)
    # failures of one object before it is `failed`
    maxAttempts: StrictInt = Field(default=c.DEFAULT_UPLOAD_MAX_ATTEMPTS, ge=1, le=1_000_000)


@dataclass(frozen=True, config=MODEL)
class AwsCredentials:
    accessKeyId: Secret
    secretAccessKey: Secret
    sessionToken: Secret | None = None
    region: Text | None = None


@dataclass(frozen=True, config=MODEL)
class StorageConfig:
    savePath: FsPath
    clearAfterUpload: StrictBool = False
    clearWhenFilePathReachGB: Number | None = Field(default=None, gt=0)
    retentionDays: Number | None = Field(default=None, gt=0)
    minFreeDiskGB: Number = Field(default=c.DEFAULT_MIN_FREE_GB, ge=0)
    retentionStrict: StrictBool = False  # retentionDays is a legal maximum: it deletes footage not yet uploaded too
    stateDir: FsPath | None = None  # default: {savePath}/.cctv

    @property
    def state_dir(self) -> Path:
        return self.stateDir if self.stateDir is not None else self.savePath / c.STATE_DIRNAME


@dataclass(frozen=True, config=MODEL)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    file: FsPath | None = None  # default: {stateDir}/logs/cctv-daemon.log; null: no log file
    maxBytes: StrictInt = Field(default=c.DEFAULT_LOG_MAX_BYTES, ge=1024)
    backupCount: StrictInt = Field(default=c.DEFAULT_LOG_BACKUP_COUNT, ge=0, le=100)
    fileEnabled: SkipJsonSchema[bool] = Field(default=True, exclude=True)  # not a key: false when "file" is null

    @model_validator(mode="before")
    @classmethod
    def _null_file_disables(cls, data: Any) -> Any:
        if isinstance(data, dict) and "file" in data and data["file"] is None:
            return {**data, "fileEnabled": False}
        return data


@dataclass(frozen=True, config=MODEL)
class SupervisorConfig:
    backoffBase: Number = Field(default=c.DEFAULT_BACKOFF_BASE_S, gt=0)
    backoffCap: Number = Field(default=c.DEFAULT_BACKOFF_CAP_S, gt=0)
    steadyAfter: Number = Field(default=c.DEFAULT_STEADY_AFTER_S, gt=0)
    stopTimeout: Number = Field(default=c.DEFAULT_STOP_TIMEOUT_S, gt=0)


@dataclass(frozen=True, config=MODEL)
class ApiConfig:
    """The HTTP API (cctv_daemon/api). A non-loopback host needs TLS (tlsCert + tlsKey) or behindTlsProxy (rules)."""

    enabled: StrictBool = True
    host: Annotated[Text, AfterValidator(_host)] = c.DEFAULT_API_HOST
    port: StrictInt = Field(default=c.DEFAULT_API_PORT, ge=0, le=65535)  # 0: an ephemeral port (tests)
    tlsCert: FsPath | None = None
    tlsKey: FsPath | None = None
    behindTlsProxy: StrictBool = False
    cors: tuple[Text, ...] = ()  # allowed origins; empty: no CORS headers at all
    liveView: StrictBool = True  # every camera's live view (a camera's own liveView wins); recording/live.py
    liveDir: FsPath | None = None  # default: a tmpfs folder ($XDG_RUNTIME_DIR or /dev/shm), recording/live.py


@dataclass(frozen=True, config=MODEL)
class FleetConfig:
    """A recorder fleet on a shared catalog (docs/scale-out.md): which shard this node is, its id in the catalog
    and the leases, and how long a camera's lease lasts. The shard and node id are resolved at start
    (fleet/identity.py: from the StatefulSet pod name when not given)."""

    shards: StrictInt = Field(default=1, ge=1, le=10_000)
    shard: StrictInt | None = Field(default=None, ge=0)  # None: 0 with one shard, else the pod name's -N
    nodeId: Annotated[Text, _matching(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}",
                                      "1-63 of A-Z a-z 0-9 . _ - starting with a letter or digit")] | None = None
    leaseSeconds: Number = Field(default=c.DEFAULT_LEASE_S, ge=3, le=3600)  # renewed every leaseSeconds / 5


def _catalog_url(value: str) -> str:
    from cctv_daemon.config.catalog_url import CatalogUrlError, parse_url  # SQLAlchemy parses; no connection

    try:
        parse_url(value)
    except CatalogUrlError as exc:
        fail(str(exc).removeprefix("catalog.url: "))
    return value


@dataclass(frozen=True, config=MODEL)
class CatalogConfig:
    """Where the catalog lives (catalog/engine.py): default the SQLite file {stateDir}/catalog.sqlite3."""

    url: Annotated[Text, AfterValidator(_catalog_url)] | None = None  # its password is a secret (${ENV})
    tablePrefix: Annotated[StrictStr, _matching(r"[A-Za-z][A-Za-z0-9_]{0,29}|",
                                                "empty or up to 30 of A-Z a-z 0-9 _ starting with a letter")] = ""


def _non_empty(cams: tuple[CameraConfig, ...]) -> tuple[CameraConfig, ...]:
    if not cams:
        fail("must not be empty (at least one camera is needed)")
    return cams


@dataclass(frozen=True, config=MODEL)
class Config:
    cameras: Annotated[tuple[CameraConfig, ...], AfterValidator(_non_empty), Field(json_schema_extra={"minItems": 1})]
    storageConfig: StorageConfig
    s3Config: S3Config | None = None
    awsCredentials: AwsCredentials | None = None
    logging: LoggingConfig = LoggingConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    api: ApiConfig = ApiConfig()
    fleet: FleetConfig = FleetConfig()
    catalog: CatalogConfig = CatalogConfig()
    ffmpegPath: Text | None = None
    path: SkipJsonSchema[Path | None] = Field(default=None, exclude=True)  # the file it was read from

    def secrets(self) -> list[str]:
        """Every secret value in this config, for redaction."""
        out = [cam.password.get_secret_value() for cam in self.cameras if cam.password]
        out += [pw for cam in self.cameras if cam.url and (pw := url_password(cam.url))]
        if self.catalog.url and (pw := url_password(self.catalog.url)):
            out += [pw, unquote(pw)]  # as written and as the driver sees it
        if self.awsCredentials:
            creds = self.awsCredentials
            out += [s.get_secret_value() for s in (creds.secretAccessKey, creds.accessKeyId, creds.sessionToken) if s]
        return [s for s in out if s]


ADAPTER: TypeAdapter[Config] = TypeAdapter(Config)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of config.json (what `cctv-daemon config-schema` prints, for editors)."""
    schema = ADAPTER.json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "cctv-daemon config.json"}


def load_config(path: str | Path) -> Config:
    """Read and validate a config file. Raises ConfigError listing every problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror}"], str(p)) from None
    data = decode(raw, str(p))
    return parse_config(data, source=str(p), base_dir=p.resolve().parent, config_path=p.resolve())


def parse_config(
    data: Any, source: str = "config", base_dir: Path | None = None, config_path: Path | None = None
) -> Config:
    """Validate already-decoded JSON into a :class:`Config`.

    Every problem is collected; if there is any, one :class:`ConfigError` lists them all, each line starting
    with its JSON path. Relative paths are resolved against ``base_dir`` (the current directory if None).
    """
    if not isinstance(data, dict):
        raise ConfigError([f"{TOP_LEVEL}: must be a JSON object (got {kind(data)})"], source)
    col = Collector()
    prepared = col.prepare(data, Config)
    config = None
    try:
        config = ADAPTER.validate_python({**prepared, "path": config_path},
                                         context={"base": base_dir if base_dir is not None else Path.cwd()})
    except ValidationError as exc:
        col.add_pydantic(exc.errors(include_url=False), Config, {"cameras": "a list of camera objects"})
    cross_checks(prepared, col)
    if col.errors or config is None:
        raise ConfigError(col.scrubbed() or [f"{TOP_LEVEL}: invalid"], source)
    return config
