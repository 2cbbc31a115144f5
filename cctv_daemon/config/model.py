"""The configuration: its typed model and the loader that validates a config.json.

Every error of a file is collected and reported at once, each naming its JSON path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from cctv_daemon.config.checks import TOP_LEVEL, Collector, Obj, describe, fmt_num, kind, url_password
from cctv_daemon.core import constants as c

SourceKind = Literal["rtsp", "webcam", "test"]
AudioMode = Literal["auto", "copy", "aac", "none"]

SOURCES = ("rtsp", "webcam", "test")
AUDIO_MODES = ("auto", "copy", "aac", "none")
ADDRESSING_STYLES = ("auto", "path", "virtual")
STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
)
SSE_MODES = ("AES256", "aws:kms")
LOG_LEVELS = ("debug", "info", "warning", "error")

_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_RESOLUTION_RE = re.compile(r"\d{2,5}x\d{2,5}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")


class ConfigError(Exception):
    """A config file with one or more errors.

    ``errors`` holds one line per error, each starting with its JSON path.
    """

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
    maxAttempts: int = c.DEFAULT_UPLOAD_MAX_ATTEMPTS  # failures of one object before it is `failed`


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
        out += [pw for cam in self.cameras if cam.url and (pw := url_password(cam.url))]
        if self.awsCredentials:
            out += [self.awsCredentials.secretAccessKey, self.awsCredentials.accessKeyId]
            if self.awsCredentials.sessionToken:
                out.append(self.awsCredentials.sessionToken)
        return [s for s in out if s]


def _keys(cls: type[Any], *, exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name not in exclude)


# The keys accepted in each object of config.json: exactly the dataclass field names.
TOP_KEYS = _keys(Config, exclude=("path",))
CAMERA_KEYS = _keys(CameraConfig)
STORAGE_KEYS = _keys(StorageConfig)
S3_KEYS = _keys(S3Config)
AWS_KEYS = _keys(AwsCredentials)
LOGGING_KEYS = _keys(LoggingConfig, exclude=("fileEnabled",))
SUPERVISOR_KEYS = _keys(SupervisorConfig)


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
        msg = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise ConfigError([msg], str(p)) from None
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
    base = base_dir if base_dir is not None else Path.cwd()
    col = Collector()
    top = Obj(col, "", data, TOP_KEYS)

    cameras = _cameras(top)
    s3 = _s3(top)
    aws = _aws(top)
    storage = _storage(top, base, s3_given=top.given("s3Config"))
    logging_cfg = _logging(top, base)
    supervisor = _supervisor(top)
    ffmpeg = top.opt_str("ffmpegPath", None)

    if col.errors or storage is None:
        raise ConfigError(col.scrubbed() or [f"{TOP_LEVEL}: invalid"], source)
    return Config(
        cameras=cameras,
        storageConfig=storage,
        s3Config=s3,
        awsCredentials=aws,
        logging=logging_cfg,
        supervisor=supervisor,
        ffmpegPath=ffmpeg,
        path=config_path,
    )


def _cameras(top: Obj) -> tuple[CameraConfig, ...]:
    if "cameras" not in top.data:
        top.err("cameras", "required")
        return ()
    raw = top.data["cameras"]
    if not isinstance(raw, list):
        top.err("cameras", f"must be a list of camera objects (got {describe(raw)})")
        return ()
    if not raw:
        top.err("cameras", "must not be empty (at least one camera is needed)")
        return ()
    cams: list[CameraConfig] = []
    first_index: dict[str, int] = {}
    for i, item in enumerate(raw):
        path = f"cameras[{i}]"
        if not isinstance(item, dict):
            top.col.add(path, f"must be an object (got {describe(item)})")
            continue
        cam = _camera(Obj(top.col, path, item, CAMERA_KEYS))
        if cam is None:
            continue
        folded = cam.cameraName.casefold()
        if folded in first_index:
            j = first_index[folded]
            top.col.add(
                f"{path}.cameraName",
                f'duplicate name "{cam.cameraName}" (also used by cameras[{j}]; names are compared'
                " ignoring case)",
            )
        else:
            first_index[folded] = i
        cams.append(cam)
    return tuple(cams)


def _valid_name(o: Obj, key: str, value: str | None) -> str | None:
    if value is not None and not _NAME_RE.fullmatch(value):
        o.err(
            key, f'must be 1-64 characters of A-Z a-z 0-9 . _ - not starting with "." (got {describe(value)})'
        )
        return None
    return value


def _camera(o: Obj) -> CameraConfig | None:
    name = _valid_name(o, "cameraName", o.req_str("cameraName"))
    feed = _valid_name(o, "videoFeedId", o.opt_str("videoFeedId", None))
    src = o.choice("source", "rtsp", SOURCES)
    url = o.opt_str("url", None)
    ip = o.opt_str("ipAddress", None)
    port = o.integer("port", c.DEFAULT_RTSP_PORT, ge=1, le=65535)
    rpath = o.opt_str("path", "/")
    user = o.opt_str("userName", None)
    password = o.opt_str("password", None)
    device = o.opt_str("device", None)
    enabled = o.boolean("enabled", True)
    frame_rate = o.number("frameRate", None, gt=0, le=120)
    resolution = o.opt_str("resolution", None)
    if resolution is not None and not _RESOLUTION_RE.fullmatch(resolution):
        o.err("resolution", f'must be "WIDTHxHEIGHT", e.g. "1280x720" (got {describe(resolution)})')
    duration = o.integer("videoDuration", c.DEFAULT_VIDEO_DURATION_S, ge=1, le=86400)
    audio = o.choice("audio", "auto", AUDIO_MODES)
    stall = o.number("stallTimeout", c.DEFAULT_STALL_TIMEOUT_S, ge=2)
    max_gb = o.number("maxStorageGB", None, gt=0)

    if src == "rtsp":
        _check_rtsp(o, url, ip)
    elif src is not None:
        for key in ("url", "ipAddress", "port", "path", "userName", "password"):
            if o.has(key):
                o.err(key, f'not used by source "{src}"')
        if src == "webcam" and not o.has("device"):
            o.err("device", 'required for source "webcam" (e.g. "/dev/video0" or a DirectShow name)')
    if src != "webcam" and src is not None and o.has("device"):
        o.err("device", f'not used by source "{src}"')

    if name is None:
        return None
    return CameraConfig(
        cameraName=name,
        videoFeedId=feed if feed is not None else name,
        source=cast(SourceKind, src or "rtsp"),
        url=url,
        ipAddress=ip,
        port=port,
        path=rpath if rpath.startswith("/") else "/" + rpath,
        userName=user,
        password=password,
        device=device,
        enabled=enabled,
        frameRate=frame_rate,
        resolution=resolution,
        videoDuration=duration,
        audio=cast(AudioMode, audio or "auto"),
        stallTimeout=stall,
        maxStorageGB=max_gb,
    )


def _check_rtsp(o: Obj, url: str | None, ip: str | None) -> None:
    has_url, has_ip = o.given("url"), o.given("ipAddress")
    if has_url and has_ip:
        o.col.add(o.path, 'give either "url" or "ipAddress", not both')
    elif not has_url and not has_ip:
        o.col.add(o.path, 'source "rtsp" needs "url" or "ipAddress"')
    if has_url:
        for key in ("port", "path"):
            if o.has(key):
                o.err(key, 'only used with "ipAddress" (put it in "url")')
    if ip is not None and ("://" in ip or any(ch in ip for ch in "/@ \t")):
        hint = ' (use "url" for a full URL)' if "://" in ip else ""
        o.err("ipAddress", f"must be a host name or IP address{hint} (got {describe(ip, 'url')})")
    creds_conflict = False
    if url is not None:
        shown = describe(url, "url")
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a bad port
        except ValueError:
            o.err("url", f"is not a valid URL (got {shown})")
        else:
            if parts.scheme.lower() not in ("rtsp", "rtsps"):
                o.err("url", f"must start with rtsp:// or rtsps:// (got {shown})")
            elif not parts.hostname:
                o.err("url", f"must include a host (got {shown})")
            if (parts.username or parts.password) and (o.given("userName") or o.given("password")):
                creds_conflict = True
                o.err("url", "has credentials inline (user:pass@); remove them or remove userName/password")
    if o.given("password") and not o.given("userName") and not creds_conflict:
        o.err("password", "needs userName")


def _storage(top: Obj, base: Path, *, s3_given: bool) -> StorageConfig | None:
    o = top.obj("storageConfig", STORAGE_KEYS, required=True)
    if o is None:
        return None
    save = o.path_value("savePath", base, required=True)
    clear = o.boolean("clearAfterUpload", False)
    if clear and not s3_given:
        o.err("clearAfterUpload", "clearAfterUpload needs s3Config (nothing is uploaded without it)")
    cap = o.number("clearWhenFilePathReachGB", None, gt=0)
    days = o.number("retentionDays", None, gt=0)
    min_free = o.number("minFreeDiskGB", c.DEFAULT_MIN_FREE_GB, ge=0)
    state = o.path_value("stateDir", base)
    if save is None:
        return None
    return StorageConfig(
        savePath=save,
        clearAfterUpload=clear,
        clearWhenFilePathReachGB=cap,
        retentionDays=days,
        minFreeDiskGB=min_free,
        stateDir=state,
    )


def _s3(top: Obj) -> S3Config | None:
    o = top.obj("s3Config", S3_KEYS)
    if o is None:
        return None
    bucket = o.req_str("s3Bucket")
    if bucket is not None and (
        not _BUCKET_RE.fullmatch(bucket) or ".." in bucket or _IPV4_RE.fullmatch(bucket)
    ):
        o.err(
            "s3Bucket",
            "must be a valid S3 bucket name: 3-63 characters of lowercase letters, digits, '.' and '-',"
            f" starting and ending with a letter or digit (got {describe(bucket)})",
        )
    prefix = o.opt_str("s3Path", "", allow_empty=True)
    endpoint = o.opt_str("endpointUrl", None)
    if endpoint is not None:
        try:
            ep = urlsplit(endpoint)
            ok = ep.scheme in ("http", "https") and bool(ep.hostname)
            _ = ep.port
        except ValueError:
            ok = False
        if not ok:
            shown = describe(endpoint, "endpointUrl")
            o.err("endpointUrl", f"must be an http:// or https:// URL (got {shown})")
    region = o.opt_str("region", None)
    style = o.choice("addressingStyle", "auto", ADDRESSING_STYLES)
    storage_class = o.choice("storageClass", "", STORAGE_CLASSES) if o.given("storageClass") else None
    sse = o.choice("serverSideEncryption", "", SSE_MODES) if o.given("serverSideEncryption") else None
    kms_key = o.opt_str("sseKmsKeyId", None)
    if o.given("sseKmsKeyId") and o.data.get("serverSideEncryption") != "aws:kms":
        o.err("sseKmsKeyId", 'only used with serverSideEncryption "aws:kms"')
    uploads = o.integer("maxConcurrentUploads", c.DEFAULT_MAX_CONCURRENT_UPLOADS, ge=1, le=32)
    bandwidth = o.number("bandwidthLimitMBps", None, gt=0)
    threshold = o.integer("multipartThresholdMB", c.DEFAULT_MULTIPART_THRESHOLD_MB, ge=5)
    max_attempts = o.integer("maxAttempts", c.DEFAULT_UPLOAD_MAX_ATTEMPTS, ge=1, le=1_000_000)
    return S3Config(
        s3Bucket=bucket or "",
        s3Path=prefix.strip("/"),
        endpointUrl=endpoint,
        region=region,
        addressingStyle=cast(Literal["auto", "path", "virtual"], style or "auto"),
        storageClass=storage_class,
        serverSideEncryption=sse,
        sseKmsKeyId=kms_key,
        maxConcurrentUploads=uploads,
        bandwidthLimitMBps=bandwidth,
        multipartThresholdMB=threshold,
        maxAttempts=max_attempts,
    )


def _aws(top: Obj) -> AwsCredentials | None:
    o = top.obj("awsCredentials", AWS_KEYS)
    if o is None:
        return None
    key_id = o.req_str("accessKeyId")
    secret = o.req_str("secretAccessKey")
    token = o.opt_str("sessionToken", None)
    region = o.opt_str("region", None)
    return AwsCredentials(
        accessKeyId=key_id or "", secretAccessKey=secret or "", sessionToken=token, region=region
    )


def _logging(top: Obj, base: Path) -> LoggingConfig:
    o = top.obj("logging", LOGGING_KEYS, required=False)
    if o is None:
        if top.has("logging") and top.data["logging"] is None:
            top.err("logging", "must be an object (got null)")
        return LoggingConfig()
    level = o.choice("level", "info", LOG_LEVELS)
    file_enabled = not (o.has("file") and o.data["file"] is None)
    log_file = o.path_value("file", base)
    return LoggingConfig(
        level=cast(Literal["debug", "info", "warning", "error"], level or "info"),
        file=log_file,
        maxBytes=o.integer("maxBytes", c.DEFAULT_LOG_MAX_BYTES, ge=1024),
        backupCount=o.integer("backupCount", c.DEFAULT_LOG_BACKUP_COUNT, ge=0, le=100),
        fileEnabled=file_enabled,
    )


def _supervisor(top: Obj) -> SupervisorConfig:
    o = top.obj("supervisor", SUPERVISOR_KEYS)
    if o is None:
        if top.has("supervisor") and top.data["supervisor"] is None:
            top.err("supervisor", "must be an object (got null)")
        return SupervisorConfig()
    before = len(o.col.errors)
    base = o.number("backoffBase", c.DEFAULT_BACKOFF_BASE_S, gt=0)
    cap = o.number("backoffCap", c.DEFAULT_BACKOFF_CAP_S, gt=0)
    if len(o.col.errors) == before and cap < base:
        o.err("backoffCap", f"must be >= backoffBase ({fmt_num(base)}) (got {fmt_num(cap)})")
    return SupervisorConfig(
        backoffBase=base,
        backoffCap=cap,
        steadyAfter=o.number("steadyAfter", c.DEFAULT_STEADY_AFTER_S, gt=0),
        stopTimeout=o.number("stopTimeout", c.DEFAULT_STOP_TIMEOUT_S, gt=0),
    )
