"""The API's place in the daemon: a stop choice that survives a restart (until started again or the config
changes), a port in use (recording goes on, status says why), and config errors for an unsafe bind."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.conftest import DaemonFactory
from tests.support.api import Api
from tests.support.daemon import pattern_camera, run_cli, wait_for


def test_a_stopped_camera_stays_stopped_across_restarts_until_started(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"cameras": [pattern_camera("keep"), pattern_camera("halt")], "logging": {"file": None}})
    api = Api(d)
    d.wait_segments("halt", 1, 40)
    assert api.post("/api/cameras/halt/stop").status_code == 200
    wait_for(lambda: api.camera("halt")["state"] == "stopped", 20, "halt stopped")
    assert d.stop() == 0
    d.start()
    api = Api(d)
    wait_for(lambda: api.camera("keep")["state"] == "recording", 40, "keep recording after the restart")
    n = len(d.segments("halt"))
    time.sleep(2)
    assert api.camera("halt")["state"] == "stopped" and len(d.segments("halt")) == n
    assert d.events("camera_stopped_by_command", camera="halt")
    assert api.post("/api/cameras/halt/start").status_code == 200
    d.wait_segments("halt", n + 1, 40)
    assert api.post("/api/cameras/halt/stop").status_code == 200
    # A changed camera config ends the choice: the camera records again after the restart.
    assert d.stop() == 0
    d.config["cameras"][1] = pattern_camera("halt", duration=2)
    d.write_config(d.config)
    d.start()
    api = Api(d)
    wait_for(lambda: api.camera("halt")["state"] == "recording", 40, "halt recording with its new config")


def test_a_port_in_use_leaves_recording_alone_and_shows_in_status(daemon_factory: DaemonFactory) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        d = daemon_factory({"cameras": [pattern_camera("cam")], "api": {"port": port}, "logging": {"file": None}})
        d.wait_segments("cam", 2, 40)
        ev = d.wait_event("api_port_unavailable", 20)[0]
        assert ev["port"] == port and ev["action"] == "recording goes on without the API"
        status = json.loads(d.cli("status", "--json").stdout)
        assert status["components"]["api"]["state"] == "failed"
        assert str(port) in status["components"]["api"]["error"]
        assert "api: failed" in d.cli("status").stdout
        assert d.cli("ui-url").returncode == 4  # not listening: no link
        assert d.stop() == 0


def test_binding_beyond_loopback_needs_tls(tmp_path: Path) -> None:
    def check(api: dict[str, object]) -> tuple[int, str]:
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps({"cameras": [pattern_camera("c")], "storageConfig": {"savePath": str(tmp_path)},
                                   "api": api}))
        res = run_cli("check-config", "--config", str(cfg))
        return res.returncode, res.stderr

    code, err = check({"host": "0.0.0.0"})
    assert code == 2 and "api.host" in err and "Traceback" not in err
    code, err = check({"host": "0.0.0.0", "tlsCert": str(tmp_path / "c.pem")})
    assert code == 2 and "api.tlsKey" in err
    assert check({"host": "0.0.0.0", "behindTlsProxy": True})[0] == 0
    assert check({"host": "::1"})[0] == 0
    assert check({"host": "localhost", "port": 8081})[0] == 0
    code, err = check({"port": 70000})
    assert code == 2 and "api.port" in err
