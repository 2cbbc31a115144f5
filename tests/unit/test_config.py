"""The config validator: every error reported at once, each with its JSON path; secrets never shown."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.config.model import (
    AwsCredentials,
    CameraConfig,
    ConfigError,
    LoggingConfig,
    S3Config,
    StorageConfig,
    SupervisorConfig,
    load_config,
    parse_config,
)
from cctv_daemon.core import constants as c

BASE = Path("/srv/cctv")


def minimal() -> dict[str, Any]:
    return {
        "cameras": [{"cameraName": "gate", "ipAddress": "192.168.1.20"}],
        "storageConfig": {"savePath": "/var/lib/cctv"},
    }


def errors_of(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=BASE)
    return info.value.errors


def with_camera(**cam: Any) -> dict[str, Any]:
    d = minimal()
    d["cameras"][0].update(cam)
    return d


def without_camera_keys(*keys: str, **cam: Any) -> dict[str, Any]:
    d = with_camera(**cam)
    for k in keys:
        del d["cameras"][0][k]
    return d


def with_section(name: str, **values: Any) -> dict[str, Any]:
    d = minimal()
    d.setdefault(name, {}).update(values)
    return d


S3_OK = {"s3Bucket": "my-cctv-bucket"}

MALFORMED: list[tuple[str, Any, str]] = [
    ("not-object", [1, 2], "(top level): must be a JSON object"),
    ("unknown-top", {**minimal(), "camera": []}, 'camera: unknown key (did you mean "cameras"?)'),
    ("no-cameras", {"storageConfig": {"savePath": "/x"}}, "cameras: required"),
    ("cameras-empty", {**minimal(), "cameras": []}, "cameras: must not be empty"),
    ("cameras-not-list", {**minimal(), "cameras": {"cameraName": "a"}}, "cameras: must be a list"),
    ("camera-not-object", {**minimal(), "cameras": ["gate"]}, 'cameras[0]: must be an object (got "gate")'),
    ("typo-key", with_camera(frameRat=5), 'cameras[0].frameRat: unknown key (did you mean "frameRate"?)'),
    ("no-name", without_camera_keys("cameraName"), "cameras[0].cameraName: required"),
    ("bad-name", with_camera(cameraName="front door"), "cameras[0].cameraName: must be 1-64 characters"),
    ("dot-name", with_camera(cameraName=".hidden"), 'not starting with "." (got ".hidden")'),
    ("long-name", with_camera(cameraName="a" * 65), "cameras[0].cameraName: must be 1-64 characters"),
    ("bad-feed", with_camera(videoFeedId="a/b"), "cameras[0].videoFeedId: must be 1-64 characters"),
    (
        "neg-duration",
        with_camera(videoDuration=-5),
        "cameras[0].videoDuration: must be a positive integer (got -5)",
    ),
    (
        "float-duration",
        with_camera(videoDuration=5.5),
        "cameras[0].videoDuration: must be a positive integer (got 5.5)",
    ),
    (
        "bool-duration",
        with_camera(videoDuration=True),
        "cameras[0].videoDuration: must be a positive integer (got true)",
    ),
    (
        "huge-duration",
        with_camera(videoDuration=90000),
        "cameras[0].videoDuration: must be at most 86400 (got 90000)",
    ),
    (
        "str-enabled",
        with_camera(enabled="true"),
        'cameras[0].enabled: must be a boolean (true or false) (got "true")',
    ),
    ("int-enabled", with_camera(enabled=1), "cameras[0].enabled: must be a boolean (true or false) (got 1)"),
    ("zero-fps", with_camera(frameRate=0), "cameras[0].frameRate: must be a positive number (got 0)"),
    ("fast-fps", with_camera(frameRate=240), "cameras[0].frameRate: must be at most 120 (got 240)"),
    ("bool-fps", with_camera(frameRate=False), "cameras[0].frameRate: must be a positive number (got false)"),
    ("bad-resolution", with_camera(resolution="1280*720"), 'cameras[0].resolution: must be "WIDTHxHEIGHT"'),
    ("bad-audio", with_camera(audio="mp3"), 'cameras[0].audio: must be one of "auto", "copy", "aac", "none"'),
    (
        "bad-source",
        with_camera(source="rstp"),
        'cameras[0].source: must be one of "rtsp", "webcam", "test" (got "rstp"; did you mean "rtsp"?)',
    ),
    ("low-stall", with_camera(stallTimeout=1), "cameras[0].stallTimeout: must be a number >= 2 (got 1)"),
    (
        "neg-maxgb",
        with_camera(maxStorageGB=-1),
        "cameras[0].maxStorageGB: must be a positive number (got -1)",
    ),
    (
        "rtsp-nothing",
        without_camera_keys("ipAddress"),
        'cameras[0]: source "rtsp" needs "url" or "ipAddress"',
    ),
    (
        "rtsp-both",
        with_camera(url="rtsp://cam/stream"),
        'cameras[0]: give either "url" or "ipAddress", not both',
    ),
    (
        "url-scheme",
        without_camera_keys("ipAddress", url="http://cam/stream"),
        'cameras[0].url: must start with rtsp:// or rtsps:// (got "http://cam/stream")',
    ),
    (
        "url-no-host",
        without_camera_keys("ipAddress", url="rtsp:///stream"),
        "cameras[0].url: must include a host",
    ),
    (
        "url-creds-twice",
        without_camera_keys("ipAddress", url="rtsp://a:b@cam/s", userName="a"),
        "cameras[0].url: has credentials inline (user:pass@)",
    ),
    ("port-range", with_camera(port=70000), "cameras[0].port: must be at most 65535 (got 70000)"),
    ("port-zero", with_camera(port=0), "cameras[0].port: must be a positive integer (got 0)"),
    (
        "port-with-url",
        without_camera_keys("ipAddress", url="rtsp://cam/s", port=8554),
        'cameras[0].port: only used with "ipAddress"',
    ),
    ("empty-ip", with_camera(ipAddress=""), 'cameras[0].ipAddress: must be a non-empty string (got "")'),
    (
        "url-as-ip",
        with_camera(ipAddress="rtsp://cam/s"),
        'cameras[0].ipAddress: must be a host name or IP address (use "url" for a full URL)',
    ),
    ("password-alone", with_camera(password="pw"), "cameras[0].password: needs userName"),
    (
        "webcam-no-device",
        without_camera_keys("ipAddress", source="webcam"),
        'cameras[0].device: required for source "webcam"',
    ),
    (
        "webcam-with-ip",
        with_camera(source="webcam", device="/dev/video0"),
        'cameras[0].ipAddress: not used by source "webcam"',
    ),
    (
        "test-with-url",
        without_camera_keys("ipAddress", source="test", url="rtsp://x/y"),
        'cameras[0].url: not used by source "test"',
    ),
    ("rtsp-with-device", with_camera(device="/dev/video0"), 'cameras[0].device: not used by source "rtsp"'),
    (
        "dup-names",
        {
            **minimal(),
            "cameras": [
                {"cameraName": "gate", "source": "test"},
                {"cameraName": "yard", "source": "test"},
                {"cameraName": "gate", "source": "test"},
            ],
        },
        'cameras[2].cameraName: duplicate name "gate" (also used by cameras[0]',
    ),
    ("no-storage", {"cameras": minimal()["cameras"]}, "storageConfig: required"),
    (
        "storage-not-object",
        {**minimal(), "storageConfig": "/x"},
        'storageConfig: must be an object (got "/x")',
    ),
    ("no-savepath", {**minimal(), "storageConfig": {}}, "storageConfig.savePath: required"),
    (
        "empty-savepath",
        {**minimal(), "storageConfig": {"savePath": " "}},
        "storageConfig.savePath: must be a non-empty string",
    ),
    (
        "clear-without-s3",
        with_section("storageConfig", clearAfterUpload=True),
        "storageConfig.clearAfterUpload: clearAfterUpload needs s3Config",
    ),
    (
        "neg-cap",
        with_section("storageConfig", clearWhenFilePathReachGB=0),
        "storageConfig.clearWhenFilePathReachGB: must be a positive number (got 0)",
    ),
    (
        "neg-free",
        with_section("storageConfig", minFreeDiskGB=-0.5),
        "storageConfig.minFreeDiskGB: must be a non-negative number (got -0.5)",
    ),
    (
        "retention-str",
        with_section("storageConfig", retentionDays="7"),
        'storageConfig.retentionDays: must be a positive number (got "7")',
    ),
    ("s3-not-object", {**minimal(), "s3Config": ["b"]}, "s3Config: must be an object (got a list)"),
    ("s3-no-bucket", with_section("s3Config", s3Path="x"), "s3Config.s3Bucket: required"),
    (
        "s3-bad-bucket",
        with_section("s3Config", s3Bucket="My_Bucket"),
        "s3Config.s3Bucket: must be a valid S3 bucket name",
    ),
    (
        "s3-ip-bucket",
        with_section("s3Config", s3Bucket="192.168.1.1"),
        "s3Config.s3Bucket: must be a valid S3 bucket",
    ),
    (
        "s3-endpoint",
        with_section("s3Config", **S3_OK, endpointUrl="minio:9000"),
        'endpointUrl: must be an http:// or https:// URL (got "minio:9000")',
    ),
    (
        "s3-style",
        with_section("s3Config", **S3_OK, addressingStyle="host"),
        "s3Config.addressingStyle: must be one of",
    ),
    (
        "s3-class",
        with_section("s3Config", **S3_OK, storageClass="GLACIER_DEEP"),
        "s3Config.storageClass: must be one of",
    ),
    (
        "s3-sse",
        with_section("s3Config", **S3_OK, serverSideEncryption="aes256"),
        's3Config.serverSideEncryption: must be one of "AES256", "aws:kms"'
        ' (got "aes256"; did you mean "AES256"?)',
    ),
    (
        "s3-kms-without",
        with_section("s3Config", **S3_OK, serverSideEncryption="AES256", sseKmsKeyId="k"),
        's3Config.sseKmsKeyId: only used with serverSideEncryption "aws:kms"',
    ),
    (
        "s3-uploads",
        with_section("s3Config", **S3_OK, maxConcurrentUploads=33),
        "s3Config.maxConcurrentUploads: must be at most 32 (got 33)",
    ),
    (
        "s3-multipart",
        with_section("s3Config", **S3_OK, multipartThresholdMB=4),
        "s3Config.multipartThresholdMB: must be an integer >= 5 (got 4)",
    ),
    (
        "s3-bandwidth",
        with_section("s3Config", **S3_OK, bandwidthLimitMBps=-2),
        "s3Config.bandwidthLimitMBps: must be a positive number (got -2)",
    ),
    (
        "aws-missing",
        with_section("awsCredentials", accessKeyId="AKIAXXXXXXXX"),
        "awsCredentials.secretAccessKey: required",
    ),
    (
        "aws-unknown",
        with_section("awsCredentials", accessKeyId="k", secretAccessKey="s", sessionTokn="t"),
        'awsCredentials.sessionTokn: unknown key (did you mean "sessionToken"?)',
    ),
    ("log-level", with_section("logging", level="verbose"), "logging.level: must be one of"),
    (
        "log-maxbytes",
        with_section("logging", maxBytes=100),
        "logging.maxBytes: must be an integer >= 1024 (got 100)",
    ),
    (
        "log-backups",
        with_section("logging", backupCount=101),
        "logging.backupCount: must be at most 100 (got 101)",
    ),
    ("log-null", {**minimal(), "logging": None}, "logging: must be an object (got null)"),
    (
        "sup-cap",
        with_section("supervisor", backoffBase=10, backoffCap=5),
        "supervisor.backoffCap: must be >= backoffBase (10) (got 5)",
    ),
    (
        "sup-cap-default",
        with_section("supervisor", backoffBase=60),
        "supervisor.backoffCap: must be >= backoffBase",
    ),
    (
        "sup-stop",
        with_section("supervisor", stopTimeout=0),
        "supervisor.stopTimeout: must be a positive number (got 0)",
    ),
    ("ffmpeg-empty", {**minimal(), "ffmpegPath": ""}, 'ffmpegPath: must be a non-empty string (got "")'),
    ("nan", with_camera(frameRate=float("nan")), "cameras[0].frameRate: must be a positive number (got NaN)"),
]


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in MALFORMED], ids=[i for i, _, _ in MALFORMED]
)
def test_malformed_config_reports_path_and_message(data: Any, expected: str) -> None:
    errors = errors_of(copy.deepcopy(data))
    assert any(expected in line for line in errors), errors


def test_every_error_line_starts_with_a_path() -> None:
    for _, data, _ in MALFORMED:
        for line in errors_of(copy.deepcopy(data)):
            path = line.split(":", 1)[0]
            assert path, line
            assert " " not in path or path == "(top level)", line


def test_all_errors_of_a_file_reported_at_once() -> None:
    data = {
        "cameras": [
            {"cameraName": "gate", "ipAddress": "10.0.0.1", "videoDuration": -5, "frameRat": 5},
            {"cameraName": "gate", "source": "test", "enabled": "yes"},
        ],
        "storageConfig": {"clearAfterUpload": True},
        "s3Config": "bucket",
        "supervisor": {"backoffBase": 0},
        "extra": 1,
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="my.json")
    errors = info.value.errors
    expected = [
        "cameras[0].videoDuration: must be a positive integer (got -5)",
        'cameras[0].frameRat: unknown key (did you mean "frameRate"?)',
        'cameras[1].cameraName: duplicate name "gate" (also used by cameras[0]',
        'cameras[1].enabled: must be a boolean (true or false) (got "yes")',
        "storageConfig.savePath: required",
        's3Config: must be an object (got "bucket")',
        "supervisor.backoffBase: must be a positive number (got 0)",
        "extra: unknown key",
    ]
    for exp in expected:
        assert any(exp in line for line in errors), (exp, errors)
    assert len(errors) == len(expected)
    text = str(info.value)
    assert text.startswith(f"my.json: {len(expected)} error(s):")
    assert len(text.splitlines()) == len(expected) + 1
    # s3Config is present (even if broken): no spurious "clearAfterUpload needs s3Config".
    assert not any("clearAfterUpload" in line for line in errors)


FULL: dict[str, Any] = {
    "cameras": [
        {
            "cameraName": "gate",
            "videoFeedId": "gate-main",
            "source": "rtsp",
            "ipAddress": "192.168.1.20",
            "port": 8554,
            "path": "Streaming/Channels/101",
            "userName": "admin",
            "password": "pw-gate-123",
            "enabled": True,
            "frameRate": 5,
            "resolution": "1280x720",
            "videoDuration": 300,
            "audio": "aac",
            "stallTimeout": 15,
            "maxStorageGB": 50.5,
        },
        {
            "cameraName": "yard",
            "url": "rtsps://cam.example:322/live?ch=1",
            "userName": "viewer",
            "enabled": False,
            "audio": "none",
        },
        {"cameraName": "desk", "source": "webcam", "device": "/dev/video0", "audio": "copy"},
        {"cameraName": "pattern_1", "source": "test"},
    ],
    "storageConfig": {
        "savePath": "recordings",
        "clearAfterUpload": True,
        "clearWhenFilePathReachGB": 100,
        "retentionDays": 30,
        "minFreeDiskGB": 0,
        "stateDir": "/var/lib/cctv-state",
    },
    "s3Config": {
        "s3Bucket": "my-cctv.bucket-1",
        "s3Path": "/recordings/2026/",
        "endpointUrl": "https://minio.local:9000",
        "region": "eu-west-1",
        "addressingStyle": "path",
        "storageClass": "STANDARD_IA",
        "serverSideEncryption": "aws:kms",
        "sseKmsKeyId": "alias/cctv",
        "maxConcurrentUploads": 4,
        "bandwidthLimitMBps": 2.5,
        "multipartThresholdMB": 64,
    },
    "awsCredentials": {
        "accessKeyId": "AKIAEXAMPLE",
        "secretAccessKey": "secret/example",
        "sessionToken": "token-example",
        "region": "us-east-1",
    },
    "logging": {"level": "debug", "file": "logs/daemon.log", "maxBytes": 2048, "backupCount": 0},
    "supervisor": {"backoffBase": 0.5, "backoffCap": 10, "steadyAfter": 120, "stopTimeout": 3},
    "ffmpegPath": "/opt/ffmpeg/bin/ffmpeg",
}


def test_full_config_round_trip(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.json"
    cfg_file.write_text(json.dumps(FULL), encoding="utf-8")
    cfg = load_config(cfg_file)
    assert cfg.path == cfg_file.resolve()
    gate, yard, desk, pattern = cfg.cameras
    assert gate == CameraConfig(
        cameraName="gate",
        videoFeedId="gate-main",
        source="rtsp",
        ipAddress="192.168.1.20",
        port=8554,
        path="/Streaming/Channels/101",
        userName="admin",
        password="pw-gate-123",
        enabled=True,
        frameRate=5.0,
        resolution="1280x720",
        videoDuration=300,
        audio="aac",
        stallTimeout=15.0,
        maxStorageGB=50.5,
    )
    assert gate.transcodes
    assert yard.url == "rtsps://cam.example:322/live?ch=1" and yard.userName == "viewer"
    assert yard.enabled is False and yard.audio == "none" and yard.videoFeedId == "yard"
    assert desk.source == "webcam" and desk.device == "/dev/video0" and desk.audio == "copy"
    assert pattern.source == "test" and not pattern.transcodes
    assert cfg.storageConfig == StorageConfig(
        savePath=tmp_path.resolve() / "recordings",
        clearAfterUpload=True,
        clearWhenFilePathReachGB=100.0,
        retentionDays=30.0,
        minFreeDiskGB=0.0,
        stateDir=Path("/var/lib/cctv-state"),
    )
    assert cfg.storageConfig.state_dir == Path("/var/lib/cctv-state")
    assert cfg.s3Config == S3Config(
        s3Bucket="my-cctv.bucket-1",
        s3Path="recordings/2026",
        endpointUrl="https://minio.local:9000",
        region="eu-west-1",
        addressingStyle="path",
        storageClass="STANDARD_IA",
        serverSideEncryption="aws:kms",
        sseKmsKeyId="alias/cctv",
        maxConcurrentUploads=4,
        bandwidthLimitMBps=2.5,
        multipartThresholdMB=64,
    )
    assert cfg.awsCredentials == AwsCredentials(
        accessKeyId="AKIAEXAMPLE",
        secretAccessKey="secret/example",
        sessionToken="token-example",
        region="us-east-1",
    )
    assert cfg.logging == LoggingConfig(
        level="debug",
        file=tmp_path.resolve() / "logs/daemon.log",
        maxBytes=2048,
        backupCount=0,
        fileEnabled=True,
    )
    assert cfg.supervisor == SupervisorConfig(
        backoffBase=0.5, backoffCap=10.0, steadyAfter=120.0, stopTimeout=3.0
    )
    assert cfg.ffmpegPath == "/opt/ffmpeg/bin/ffmpeg"
    assert set(cfg.secrets()) == {"pw-gate-123", "AKIAEXAMPLE", "secret/example", "token-example"}
    assert "pw-gate-123" not in repr(cfg) and "secret/example" not in repr(cfg)


def test_defaults() -> None:
    cfg = parse_config(minimal(), base_dir=BASE)
    (cam,) = cfg.cameras
    assert cam == CameraConfig(cameraName="gate", videoFeedId="gate", ipAddress="192.168.1.20")
    assert cam.source == "rtsp" and cam.port == c.DEFAULT_RTSP_PORT and cam.path == "/"
    assert cam.enabled is True and cam.audio == "auto" and cam.frameRate is None and cam.resolution is None
    assert cam.videoDuration == c.DEFAULT_VIDEO_DURATION_S and cam.stallTimeout == c.DEFAULT_STALL_TIMEOUT_S
    assert not cam.transcodes
    assert cfg.storageConfig == StorageConfig(savePath=Path("/var/lib/cctv"))
    assert cfg.storageConfig.minFreeDiskGB == c.DEFAULT_MIN_FREE_GB
    assert cfg.storageConfig.state_dir == Path("/var/lib/cctv") / c.STATE_DIRNAME
    assert cfg.s3Config is None and cfg.awsCredentials is None and cfg.ffmpegPath is None
    assert cfg.logging == LoggingConfig() and cfg.logging.fileEnabled and cfg.logging.file is None
    assert cfg.supervisor == SupervisorConfig()
    s3 = parse_config({**minimal(), "s3Config": {"s3Bucket": "abc"}}).s3Config
    assert s3 == S3Config(s3Bucket="abc")
    assert s3.maxConcurrentUploads == c.DEFAULT_MAX_CONCURRENT_UPLOADS
    assert s3.multipartThresholdMB == c.DEFAULT_MULTIPART_THRESHOLD_MB


def test_null_optional_sections_and_log_file_disabled() -> None:
    data = {**minimal(), "s3Config": None, "awsCredentials": None, "logging": {"file": None}}
    cfg = parse_config(data)
    assert cfg.s3Config is None and cfg.awsCredentials is None
    assert cfg.logging.file is None and cfg.logging.fileEnabled is False


def test_env_secrets_substituted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_USER", "admin")
    monkeypatch.setenv("CAM_PW", "s3cr3t-pw")
    monkeypatch.setenv("AWS_KEY", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET", "env-secret-value")
    data = {
        "cameras": [
            {"cameraName": "a", "ipAddress": "10.0.0.1", "userName": "${CAM_USER}", "password": "${CAM_PW}"},
            {"cameraName": "b", "url": "rtsp://${CAM_USER}:${CAM_PW}@10.0.0.2/live"},
        ],
        "storageConfig": {"savePath": "/x"},
        "awsCredentials": {"accessKeyId": "${AWS_KEY}", "secretAccessKey": "pre-${AWS_SECRET}-post"},
    }
    cfg = parse_config(data)
    a, b = cfg.cameras
    assert a.userName == "admin" and a.password is not None and a.password.get_secret_value() == "s3cr3t-pw"
    assert b.url == "rtsp://admin:s3cr3t-pw@10.0.0.2/live"
    assert cfg.awsCredentials is not None
    assert cfg.awsCredentials.accessKeyId.get_secret_value() == "AKIAENV"
    assert cfg.awsCredentials.secretAccessKey.get_secret_value() == "pre-env-secret-value-post"


def test_env_secret_unset_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCTV_TEST_UNSET_PW", raising=False)
    monkeypatch.delenv("CCTV_TEST_UNSET_KEY", raising=False)
    data = with_camera(userName="admin", password="${CCTV_TEST_UNSET_PW}")
    data["awsCredentials"] = {"accessKeyId": "x${CCTV_TEST_UNSET_KEY}", "secretAccessKey": "abc"}
    errors = errors_of(data)
    assert 'cameras[0].password: environment variable "CCTV_TEST_UNSET_PW" is not set' in errors
    assert 'awsCredentials.accessKeyId: environment variable "CCTV_TEST_UNSET_KEY" is not set' in errors
    assert len(errors) == 2  # no extra "required"/"needs userName" noise


def test_env_not_substituted_in_other_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_DIR", "/tmp")
    cfg = parse_config({**minimal(), "ffmpegPath": "${SOME_DIR}/ffmpeg"})
    assert cfg.ffmpegPath == "${SOME_DIR}/ffmpeg"


def test_secrets_never_in_error_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM2_PW", "env-url-password")
    data = {
        "cameras": [
            # bad url with an inline password: shown redacted
            {"cameraName": "a", "url": "http://admin:Url-Pass-1@cam/stream"},
            # bad url whose password comes from the environment
            {"cameraName": "b", "url": "ftp://admin:${CAM2_PW}@cam/stream"},
            # password of a wrong type and password without userName
            {"cameraName": "c", "ipAddress": "h", "password": 12345678},
            {"cameraName": "d", "ipAddress": "h", "password": "Cam-Pass-2"},
            # url without a scheme but with credentials
            {"cameraName": "e", "url": "admin:Url-Pass-3@cam/stream"},
        ],
        "storageConfig": {"savePath": "/x"},
        "awsCredentials": {"accessKeyId": ["AKIA-LIST"], "secretAccessKey": 987654321, "sessionToken": True},
        "s3Config": {"s3Bucket": "ok-bucket", "endpointUrl": "ftp://k:Endpoint-Pass@host"},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    text = str(info.value)
    for secret in (
        "Url-Pass-1",
        "env-url-password",
        "12345678",
        "Cam-Pass-2",
        "Url-Pass-3",
        "AKIA-LIST",
        "987654321",
        "Endpoint-Pass",
    ):
        assert secret not in text, (secret, text)
    errors = info.value.errors
    assert 'cameras[0].url: must start with rtsp:// or rtsps:// (got "http://admin:***@cam/stream")' in errors
    assert 'cameras[1].url: must start with rtsp:// or rtsps:// (got "ftp://admin:***@cam/stream")' in errors
    assert "cameras[2].password: must be a non-empty string (got a number)" in errors
    assert "cameras[3].password: needs userName" in errors
    assert 'cameras[4].url: must start with rtsp:// or rtsps:// (got "admin:***@cam/stream")' in errors
    assert "awsCredentials.accessKeyId: must be a non-empty string (got a list)" in errors
    assert "awsCredentials.secretAccessKey: must be a non-empty string (got a number)" in errors
    assert "awsCredentials.sessionToken: must be a non-empty string (got true)" in errors
    assert 's3Config.endpointUrl: must be an http:// or https:// URL (got "ftp://k:***@host")' in errors


def test_url_with_short_password_is_redacted() -> None:
    # Too short for the scrubbing backstop: redaction of the URL itself must hide it.
    errors = errors_of(without_camera_keys("ipAddress", url="http://a:xy@cam/s"))
    assert errors == ['cameras[0].url: must start with rtsp:// or rtsps:// (got "http://a:***@cam/s")']


def test_relative_paths_resolved_against_base_dir(tmp_path: Path) -> None:
    data = minimal()
    data["storageConfig"] = {"savePath": "rec/cams", "stateDir": "state"}
    data["logging"] = {"file": "log/d.log"}
    cfg = parse_config(data, base_dir=tmp_path)
    assert cfg.storageConfig.savePath == tmp_path / "rec/cams"
    assert cfg.storageConfig.stateDir == tmp_path / "state"
    assert cfg.logging.file == tmp_path / "log/d.log"
    absolute = parse_config({**minimal(), "storageConfig": {"savePath": "/abs"}}, base_dir=tmp_path)
    assert absolute.storageConfig.savePath == Path("/abs")


def test_relative_savepath_without_base_dir_uses_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({**minimal(), "storageConfig": {"savePath": "rec"}})
    assert cfg.storageConfig.savePath == Path.cwd() / "rec"


def test_home_expanded_in_savepath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = parse_config({**minimal(), "storageConfig": {"savePath": "~/rec"}}, base_dir=BASE)
    assert cfg.storageConfig.savePath == tmp_path / "rec"


def test_load_config_relative_to_file(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "config.json").write_text(json.dumps({**minimal(), "storageConfig": {"savePath": "data"}}))
    cfg = load_config(sub / "config.json")
    assert cfg.storageConfig.savePath == sub.resolve() / "data"


def test_load_config_non_json(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{ cameras: [ }", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.source == str(bad)
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith("not valid JSON: ")
    assert "line 1 column 3" in info.value.errors[0]


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.json")
    assert info.value.errors[0].startswith("cannot read ")


def test_load_config_validation_errors_name_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"cameras": [], "storageConfig": {"savePath": "x"}}))
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert str(info.value).startswith(f"{f}: 1 error(s):")
    assert info.value.errors == ["cameras: must not be empty (at least one camera is needed)"]


def test_names_valid_edge_cases() -> None:
    data = minimal()
    data["cameras"] = [
        {"cameraName": "a" * 64, "source": "test"},
        {"cameraName": "cam.1_front-2", "videoFeedId": "x", "source": "test"},
        {"cameraName": "other", "videoFeedId": "x", "source": "test"},  # videoFeedId need not be unique
    ]
    assert len(parse_config(data).cameras) == 3


def test_user_name_without_password_allowed() -> None:
    cam = parse_config(with_camera(userName="admin")).cameras[0]
    assert cam.userName == "admin" and cam.password is None
