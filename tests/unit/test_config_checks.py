"""Bad config files that once got a traceback or a wrong answer, what `run` needs from the machine (checked by
`check-config` and by `run` before its lock), the JSON Schema, and docs/config.md kept equal to the models."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from cctv_daemon.config.checks import SECRET_KEYS, inner_model, model_fields
from cctv_daemon.config.model import Config, ConfigError, json_schema, load_config, parse_config
from cctv_daemon.config.rules import S3_MAX_KEY_BYTES, s3_key_bytes
from cctv_daemon.core import constants as c
from cctv_daemon.segments.names import file_name
from cctv_daemon.upload.uploader import object_key

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Very-Secret-Pw-42"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cctv_daemon", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def write(tmp_path: Path, data: Any, name: str = "config.json") -> Path:
    f = tmp_path / name
    f.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return f


def config(tmp_path: Path, **top: Any) -> dict[str, Any]:
    return {"cameras": [{"cameraName": "gate", "source": "test"}],
            "storageConfig": {"savePath": str(tmp_path / "rec")}, **top}


def assert_config_error(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode == c.EXIT_USAGE, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.startswith("cctv-daemon: invalid config "), proc.stderr
    for exp in expected:
        assert exp in proc.stderr, (exp, proc.stderr)
    assert SECRET not in proc.stderr


# -- files that are not JSON a config can be -------------------------------------------------------------
def test_non_utf8_byte_is_named_with_its_place(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_bytes(b'{"cameras": [{"cameraName": "g\xe9te"}],\n "storageConfig": {}}')
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert info.value.errors == ["not valid UTF-8: byte 0xe9 at line 1 column 31 (save the file as UTF-8)"]
    assert_config_error(cli("check-config", "--config", str(f)), "not valid UTF-8: byte 0xe9")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_bytes(b"\xef\xbb\xbf" + json.dumps(config(tmp_path)).encode())
    assert load_config(f).cameras[0].cameraName == "gate"


def test_json_nested_100000_deep(tmp_path: Path) -> None:
    f = write(tmp_path, '{"cameras": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert_config_error(cli("check-config", "--config", str(f)), "not valid JSON for a config: nested too deeply")
    assert_config_error(cli("status", "--config", str(f)), "nested too deeply")  # its lenient reading too


def test_5000_digit_number(tmp_path: Path) -> None:
    text = json.dumps(config(tmp_path)).replace('"test"}', '"test", "port": ' + "9" * 5000 + "}")
    f = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert info.value.errors == [f"a number of 5000 digits at line 1 column {text.index('9' * 50) + 1}"
                                 " (at most 100 digits)"]
    assert_config_error(cli("run", "--config", str(f)), "a number of 5000 digits")


# -- values known to fail at run time --------------------------------------------------------------------
@pytest.mark.parametrize("url", ["rtsp://my cam/live", "rtsp://admin:pw@cam era:554/x", "rtsp://ca\tm/x",
                                 "rtsp://[::1x]/x", "rtsp://cam<1>/x", "rtsp://cam/my stream"])
def test_invalid_character_in_url_host(url: str) -> None:
    data = {"cameras": [{"cameraName": "gate", "url": url}], "storageConfig": {"savePath": "/x"}}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    (line,) = info.value.errors
    assert line.startswith("cameras[0].url: "), line
    assert "invalid host" in line or "not a valid URL" in line or "must not contain spaces" in line, line
    assert ":pw@" not in line


@pytest.mark.parametrize("url", ["rtsp://cam.local/live", "rtsp://192.168.1.2:8554/x", "rtsp://[fe80::1]/x",
                                 "rtsps://my_cam-2.lan/x?ch=1", "rtsp://u:p@host/x"])
def test_valid_url_hosts(url: str) -> None:
    data = {"cameras": [{"cameraName": "gate", "url": url}], "storageConfig": {"savePath": "/x"}}
    assert parse_config(data).cameras[0].url == url


def test_invalid_character_in_ip_address() -> None:
    data = {"cameras": [{"cameraName": "gate", "ipAddress": "my cam"}], "storageConfig": {"savePath": "/x"}}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.errors == ['cameras[0].ipAddress: must be a host name or IP address (got "my cam")']
    data["cameras"][0]["ipAddress"] = "fe80::1"
    assert parse_config(data).cameras[0].ipAddress == "fe80::1"


def test_s3_key_length_matches_the_uploader() -> None:
    name = "cam_" + "x" * 60
    key = object_key("a/b/", name, 1_800_000_000.4, file_name(name, "feed-1", 1_800_000_000, 1_800_000_600))
    assert s3_key_bytes("a/b/", name, "feed-1") == len(key.encode())
    assert s3_key_bytes("", "g", "g") == len(object_key("", "g", 0, file_name("g", "g", 0, 0)))


def test_s3_path_making_keys_longer_than_1024_bytes() -> None:
    cams = [{"cameraName": "gate", "source": "test"}, {"cameraName": "yard", "videoFeedId": "y" * 64,
                                                         "source": "test"}]
    fixed = s3_key_bytes("", "yard", "y" * 64) + 1  # everything but the prefix (and its "/")
    data = {"cameras": cams, "storageConfig": {"savePath": "/x"},
            "s3Config": {"s3Bucket": "abc", "s3Path": "p" * (S3_MAX_KEY_BYTES - fixed)}}
    assert parse_config(data).s3Config is not None  # exactly 1024 bytes: fine
    data["s3Config"]["s3Path"] += "é"  # two bytes more in UTF-8
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.errors == ['s3Config.s3Path: makes the S3 object keys of camera(s) "yard" up to 1026 bytes'
                                 " long; S3 allows at most 1024 (shorten s3Path by 2 bytes)"]


# -- what run needs from the machine ----------------------------------------------------------------------
def test_check_config_creates_nothing(tmp_path: Path) -> None:
    f = write(tmp_path, config(tmp_path, logging={"file": str(tmp_path / "logs" / "d.log")}))
    before = sorted(tmp_path.rglob("*"))
    proc = cli("check-config", "--config", str(f))
    assert proc.returncode == 0, proc.stderr
    assert "OK (1 camera(s) enabled: gate" in proc.stdout
    assert sorted(tmp_path.rglob("*")) == before
    (tmp_path / "rec").mkdir()
    assert cli("check-config", "--config", str(f)).returncode == 0
    assert sorted(tmp_path.rglob("*")) == [*before, tmp_path / "rec"]


def test_save_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "rec").write_text("not a folder")
    f = write(tmp_path, config(tmp_path))
    assert_config_error(cli("check-config", "--config", str(f)),
                        f"storageConfig.savePath: {tmp_path / 'rec'} exists and is not a folder")
    assert_config_error(cli("run", "--config", str(f)), "storageConfig.savePath:")


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    data = config(tmp_path)
    data["storageConfig"]["stateDir"] = str(tmp_path / "state")
    f = write(tmp_path, data)
    assert_config_error(cli("check-config", "--config", str(f)), "storageConfig.stateDir: ", "is not a folder")
    assert_config_error(cli("run", "--config", str(f)), "storageConfig.stateDir: ")
    assert not (tmp_path / "rec").exists()


def test_default_state_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / c.STATE_DIRNAME).write_text("")
    f = write(tmp_path, config(tmp_path))
    assert_config_error(cli("check-config", "--config", str(f)),
                        "storageConfig.stateDir: ", "(stateDir defaults to {savePath}/.cctv)")


def test_save_path_under_proc(tmp_path: Path) -> None:
    data = config(tmp_path)
    data["storageConfig"]["savePath"] = "/proc/cctv-test/recordings"
    f = write(tmp_path, data)
    assert_config_error(cli("check-config", "--config", str(f)),
                        "storageConfig.savePath: /proc/cctv-test/recordings cannot be created")


def test_camera_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "gate").write_text("")
    f = write(tmp_path, config(tmp_path))
    assert_config_error(cli("check-config", "--config", str(f)), "cameras[0].cameraName: ")


def test_log_file_that_is_a_folder_stops_run_before_its_lock(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    f = write(tmp_path, config(tmp_path, logging={"file": str(tmp_path / "logs")}))
    assert_config_error(cli("check-config", "--config", str(f)), f"logging.file: {tmp_path / 'logs'} is a folder")
    assert_config_error(cli("run", "--config", str(f)), "logging.file: ")
    assert not (tmp_path / "rec").exists()  # no state folder, no lock file


def test_default_log_file_that_is_a_folder(tmp_path: Path) -> None:
    log = tmp_path / "rec" / c.STATE_DIRNAME / c.LOG_DIRNAME / c.LOG_FILENAME
    log.mkdir(parents=True)
    f = write(tmp_path, config(tmp_path))
    assert_config_error(cli("run", "--config", str(f)), "logging.file: ", "is a folder")
    assert not (log.parents[1] / c.LOCK_FILENAME).exists()


def test_log_file_disabled_is_not_checked(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    f = write(tmp_path, config(tmp_path, logging={"file": None}))
    assert cli("check-config", "--config", str(f)).returncode == 0


@pytest.mark.parametrize("case", ["not-executable", "missing", "folder", "not-on-path"])
def test_ffmpeg_path_that_cannot_run(tmp_path: Path, case: str) -> None:
    target = {"not-executable": tmp_path / "ffmpeg", "missing": tmp_path / "nope" / "ffmpeg",
              "folder": tmp_path, "not-on-path": Path("no-such-ffmpeg-cctv")}[case]
    if case == "not-executable":
        target.write_text("#!/bin/sh\n")
        target.chmod(0o644)
    why = {"not-executable": "is not executable (mode 644; chmod +x it)", "missing": "does not exist",
           "folder": "is not a file", "not-on-path": "is not a program on PATH"}[case]
    f = write(tmp_path, config(tmp_path, ffmpegPath=str(target)))
    assert_config_error(cli("check-config", "--config", str(f)), f'ffmpegPath: "{target}" {why}')
    assert_config_error(cli("run", "--config", str(f)), "ffmpegPath: ")


def test_error_output_never_shows_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = config(tmp_path, awsCredentials={"accessKeyId": SECRET + "-key", "secretAccessKey": SECRET},
                  s3Config={"s3Bucket": "abc", "s3Path": "x" * 1100})
    data["cameras"] += [
        {"cameraName": "a", "url": f"rtsp://admin:{SECRET}@my cam/x"},
        {"cameraName": "b", "ipAddress": "h", "userName": "u", "password": SECRET, "frameRate": 0},
        {"cameraName": "c", "url": f"http://admin:{SECRET}@cam/x"},
        {"cameraName": "d", "ipAddress": "h", "password": SECRET},
    ]
    f = write(tmp_path, data)
    proc = cli("check-config", "--config", str(f))
    assert_config_error(proc, "cameras[1].url: has an invalid host", "cameras[2].frameRate: ",
                        'cameras[3].url: must start with rtsp:// or rtsps:// (got "http://admin:***@cam/x")',
                        "cameras[4].password: needs userName", "s3Config.s3Path: ")
    # a valid config with secrets and a machine problem: still no secret
    ok = config(tmp_path, awsCredentials={"accessKeyId": "AKIA1234", "secretAccessKey": SECRET},
                ffmpegPath=str(tmp_path / "missing-ffmpeg"))
    ok["cameras"] = [{"cameraName": "a", "ipAddress": "h", "userName": "u", "password": SECRET}]
    assert_config_error(cli("run", "--config", str(write(tmp_path, ok))), "ffmpegPath: ")


# -- the models: secrets, schema, docs ---------------------------------------------------------------------
def _models() -> dict[str, type[Any]]:
    """JSON path of each object ("" is the top level; "cameras" each camera) -> its model."""
    out: dict[str, type[Any]] = {"": Config}
    for key, fi in model_fields(Config).items():
        if (sub := inner_model(fi.annotation)) is not None:
            out[key] = sub
    return out


def test_secret_keys_are_the_secret_fields() -> None:
    typed_secret = {key for cls in _models().values() for key, fi in model_fields(cls).items()
                    if "SecretStr" in str(fi.annotation)}
    assert typed_secret == SECRET_KEYS


def test_secrets_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCTV_T_PW", SECRET)
    data = {"cameras": [{"cameraName": "a", "ipAddress": "h", "userName": "u", "password": "${CCTV_T_PW}"},
                        {"cameraName": "b", "url": f"rtsp://u:{SECRET}-2@h/x"}],
            "storageConfig": {"savePath": "/x"},
            "awsCredentials": {"accessKeyId": SECRET + "-3", "secretAccessKey": SECRET + "-4",
                               "sessionToken": SECRET + "-5"}}
    cfg = parse_config(data)
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)
    assert isinstance(cfg.cameras[0].password, SecretStr)
    assert sorted(cfg.secrets()) == sorted([SECRET, f"{SECRET}-2", f"{SECRET}-3", f"{SECRET}-4", f"{SECRET}-5"])


def test_config_schema_command_prints_the_models(tmp_path: Path) -> None:
    proc = cli("config-schema")
    assert proc.returncode == 0 and proc.stderr == ""
    schema = json.loads(proc.stdout)
    assert schema == json_schema()
    defs = schema["$defs"]
    for path, cls in _models().items():
        node = schema if path == "" else defs[cls.__name__]
        assert set(node["properties"]) == set(model_fields(cls)), path
        assert node["additionalProperties"] is False
    assert "path" not in schema["properties"] and "fileEnabled" not in defs["LoggingConfig"]["properties"]
    assert defs["CameraConfig"]["properties"]["password"]["anyOf"][0]["writeOnly"] is True


def test_valid_configs_pass_the_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from tests.unit.test_config import FULL

    validator = jsonschema.Draft202012Validator(json_schema())
    validator.validate(FULL)
    validator.validate(json.loads((ROOT / "config.json").read_text()))
    assert list(validator.iter_errors({**FULL, "camera": []}))  # unknown key


def _documented() -> dict[str, set[str]]:
    """Keys documented in docs/config.md: the first column of the table under each "## `object`" heading."""
    out: dict[str, set[str]] = {}
    section: str | None = None
    for line in (ROOT / "docs" / "config.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            m = re.search(r"`([A-Za-z0-9]+)(\[\])?`", line)
            section = m.group(1) if m else ("" if line.strip() == "## Top level" else None)
            if section is not None:
                out.setdefault(section, set())
        elif section is not None and line.startswith("| ") and not line.startswith("| key "):
            out[section].update(re.findall(r"`([A-Za-z0-9]+)`", line.split("|")[1]))
    return out


def test_docs_list_exactly_the_models_keys() -> None:
    documented = _documented()
    models = _models()
    assert set(documented) == set(models)
    for path, cls in models.items():
        assert documented[path] == set(model_fields(cls)), (path or "top level", documented[path] ^ set(
            model_fields(cls)))



@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:99999", "https://minio.lan:65536/"])
def test_endpoint_port_out_of_range(endpoint: str) -> None:
    data = {"cameras": [{"cameraName": "gate", "source": "test"}], "storageConfig": {"savePath": "/x"},
            "s3Config": {"s3Bucket": "bucket-1", "endpointUrl": endpoint}}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.errors == [f"s3Config.endpointUrl: has a port out of range 1-65535 (got {endpoint!r})"]
