"""The per-camera `rtspTransport` key: tcp (default), udp, auto; validated, RTSP sources only."""

from __future__ import annotations

from typing import Any

import pytest

from cctv_daemon.config.model import ConfigError, parse_config


def config(**cam: Any) -> dict[str, Any]:
    return {"cameras": [{"cameraName": "gate", **cam}], "storageConfig": {"savePath": "/tmp/rec"}}


def test_default_and_values() -> None:
    assert parse_config(config(ipAddress="10.0.0.5")).cameras[0].rtspTransport == "tcp"
    for value in ("tcp", "udp", "auto"):
        assert parse_config(config(ipAddress="10.0.0.5", rtspTransport=value)).cameras[0].rtspTransport == value


@pytest.mark.parametrize(("cam", "expected"), [
    ({"ipAddress": "10.0.0.5", "rtspTransport": "http"}, "cameras[0].rtspTransport"),
    ({"ipAddress": "10.0.0.5", "rtspTransport": 1}, "cameras[0].rtspTransport"),
    ({"source": "test", "rtspTransport": "udp"}, 'cameras[0].rtspTransport: not used by source "test"'),
])
def test_bad_values_name_the_key(cam: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config(**cam))
    assert any(e.startswith(expected) for e in err.value.errors), err.value.errors
