"""The control socket: both transports (Unix; TCP + token, forced on Linux as on Windows), the short-path fallback
for long state folders, permissions, and stop/reload/status/record against real daemons."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.config.model import parse_config
from cctv_daemon.core import constants as c
from cctv_daemon.core.events import CameraStateChanged
from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
from cctv_daemon.service import control
from cctv_daemon.service.commands import CommandFailed, CommandQueue
from cctv_daemon.service.control import ControlServer, ControlUnavailable, send_command
from cctv_daemon.service.root import build_daemon
from cctv_daemon.service.snapshot import Snapshot
from tests.support.daemon import REPO, DaemonProc, pattern_camera, wait_for

ENV = {"PYTHONPATH": str(REPO)}
SNAP = Snapshot(pid=os.getpid(), started_at=0.0, updated_at=1.0, phase="running", config=None, save_path="/rec")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    """A ControlServer with a thread standing in for the main loop (runs queued commands)."""
    servers: list[ControlServer] = []
    done = threading.Event()
    queues: list[CommandQueue] = []

    def loop() -> None:
        while not done.is_set():
            for q in list(queues):
                q.run_pending()
            done.wait(0.01)

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def make(state_dir: Path, transport: str) -> ControlServer:
        q = CommandQueue()
        q.register("echo", lambda args: dict(args))
        queues.append(q)
        srv = ControlServer(state_dir, q, lambda: SNAP, transport)
        srv.start()
        servers.append(srv)
        return srv

    yield make
    done.set()
    for srv in servers:
        srv.stop()
    t.join(2)


def test_unix_socket_answers_and_only_the_owner_may_connect(tmp_path: Path, served: Any) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    srv = served(state, "unix")
    sock = state / "control.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600  # no group/other bits: nobody else can connect
    assert json.loads((state / "control.json").read_text())["path"] == str(sock)
    assert send_command(state, "echo", {"x": 1}) == {"x": 1}
    assert send_command(state, "status")["phase"] == "running"  # from the snapshot, not the queue
    with pytest.raises(CommandFailed, match="nope: not supported"):
        send_command(state, "nope")
    with pytest.raises(ControlUnavailable, match="not 1"):
        send_command(state, "echo", pid=1)  # an endpoint file of another pid is not ours to trust
    srv.stop()
    assert not sock.exists() and not (state / "control.json").exists()
    with pytest.raises(ControlUnavailable):
        send_command(state, "echo")


def test_group_writable_state_folder_gives_a_group_socket(tmp_path: Path, served: Any) -> None:
    state = tmp_path / "shared"
    state.mkdir()
    state.chmod(0o2770)
    served(state, "unix")
    assert stat.S_IMODE((state / "control.sock").stat().st_mode) == 0o660


def test_long_state_folder_falls_back_to_a_short_private_path(tmp_path: Path, served: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    state = tmp_path / ("d" * 60) / ("e" * 60)
    state.mkdir(parents=True)
    assert len(os.fsencode(str(state / "control.sock"))) > 108  # would not even bind
    srv = served(state, "unix")
    path = Path(json.loads((state / "control.json").read_text())["path"])  # the pointer file
    assert len(os.fsencode(str(path))) <= control.MAX_SUN_PATH and not path.is_relative_to(state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and path.parent.stat().st_uid == os.getuid()
    assert send_command(state, "echo", {"long": True}) == {"long": True}
    srv.stop()
    assert not path.exists()


def test_tcp_transport_needs_the_token(tmp_path: Path, served: Any) -> None:
    state = tmp_path / "state"
    state.mkdir()
    srv = served(state, "tcp")
    info = json.loads((state / "control.json").read_text())
    assert info["transport"] == "tcp" and info["host"] == "127.0.0.1"
    token_file = state / "control.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in (state / "control.json").read_text()
    assert send_command(state, "echo", {"y": 2}) == {"y": 2}
    with pytest.raises(CommandFailed, match="refused: wrong or missing token"):
        send_command(state, "echo", token="0" * 64)
    with pytest.raises(CommandFailed, match="refused"):
        send_command(state, "status", token="")
    assert srv.refused == 2
    srv.stop()
    assert not token_file.exists()


def _status_json(d: DaemonProc) -> dict[str, Any] | None:
    res = d.cli("status", "--json")
    return json.loads(res.stdout) if res.returncode == 0 else None


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_stop_reload_status_through_the_socket(tmp_path: Path, transport: str) -> None:
    d = DaemonProc(tmp_path, {"cameras": [pattern_camera("s1")], "logging": {"file": None}},
                   env={**ENV, control.TRANSPORT_ENV: transport}).start()
    assert d.proc is not None
    try:
        wait_for(lambda: (s := _status_json(d)) and s["cameras"].get("s1", {}).get("state") == "recording", 30,
                 "s1 recording", proc=d.proc)
        # status.json made unusable: `status` still answers, so it came through the socket.
        (d.state_dir / c.STATUS_FILENAME).unlink()
        (d.state_dir / c.STATUS_FILENAME).mkdir()
        s = _status_json(d)
        assert s is not None and s["pid"] == d.proc.pid and s["phase"] == "running"
        assert s["components"]["control"]["transport"] == transport
        human = d.cli("status")
        assert human.returncode == 0 and "s1 " in human.stdout

        d.write_config({"cameras": [pattern_camera("s1"), pattern_camera("s2")], "logging": {"file": None},
                        "storageConfig": {"savePath": str(d.save_path)}})
        res = d.cli("reload")
        assert res.returncode == 0, res.stderr
        assert "added: s2" in res.stdout
        wait_for(lambda: (x := _status_json(d)) and x["cameras"].get("s2", {}).get("state") == "recording", 30,
                 "s2 recording after reload", proc=d.proc)

        stop = d.cli("stop", "--timeout", "30")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "(control socket)" in stop.stdout
        assert d.proc.wait(5) == 0
        assert not (d.state_dir / "control.json").exists()
    finally:
        d.close()


def test_stop_falls_back_to_sigterm_when_the_socket_is_gone(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path, {"cameras": [pattern_camera("g1")], "logging": {"file": None}}, env=ENV).start()
    assert d.proc is not None
    try:
        wait_for(lambda: (s := _status_json(d)) and s["cameras"].get("g1", {}).get("state") == "recording", 30,
                 "g1 recording", proc=d.proc)
        (d.state_dir / "control.sock").unlink()
        stop = d.cli("stop", "--timeout", "30")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "(SIGTERM)" in stop.stdout
        assert d.proc.wait(5) == 0
    finally:
        d.close()


def test_record_a_disabled_camera_for_a_while_through_the_command_queue(tmp_path: Path) -> None:
    """In-process daemon (real ffmpeg, real loop on a thread): `record` starts a configured but disabled camera,
    it records, then stops by itself; events and snapshots tell it without polling live objects."""
    config = parse_config({"cameras": [{**pattern_camera("r1"), "enabled": False}],
                           "storageConfig": {"savePath": str(tmp_path / "rec")}, "logging": {"file": None}},
                          base_dir=tmp_path)
    daemon = build_daemon(config, find_ffmpeg(config.ffmpegPath), service=False)
    states: list[CameraStateChanged] = []
    daemon.bus.on(CameraStateChanged, "test", states.append)
    codes: list[int] = []
    loop = threading.Thread(target=lambda: codes.append(daemon.run()), daemon=True)
    loop.start()
    try:
        wait_for(lambda: daemon.snapshot.phase == "running", 30, "daemon running")
        assert daemon.snapshot.cameras == {}
        with pytest.raises(CommandFailed, match="unknown camera 'nope' \\(configured: r1\\)"):
            daemon.commands.call("record", {"camera": "nope", "minutes": 1}, timeout=10)
        with pytest.raises(CommandFailed, match='"minutes" must be'):
            daemon.commands.call("record", {"camera": "r1", "minutes": -1}, timeout=10)
        res = daemon.commands.call("record", {"camera": "r1", "minutes": 0.1}, timeout=10)  # 6 s
        assert res["camera"] == "r1" and res["until"] > 0
        wait_for(lambda: (cam := daemon.snapshot.cameras.get("r1")) is not None and cam.state == "recording",
                 30, "r1 recording")
        assert daemon.snapshot.cameras["r1"].record_until is not None
        wait_for(lambda: daemon.snapshot.cameras["r1"].state == "stopped", 30, "r1 stopped by itself")
        assert wait_for(lambda: daemon.snapshot.cameras["r1"].segments >= 1, 10, "a segment of r1")
        assert [e.new for e in states][:2] == ["starting", "recording"] and states[-1].new == "stopped"
        # Started by command: records until stopped, so a timed record of it is refused.
        assert daemon.commands.call("start_camera", {"camera": "r1"}, timeout=10)["camera"] == "r1"
        with pytest.raises(CommandFailed, match="is already recording continuously"):
            daemon.commands.call("record", {"camera": "r1", "minutes": 1}, timeout=10)
        assert daemon.commands.call("stop_camera", {"camera": "r1"}, timeout=10)["state"] in ("stopping", "stopped")
        assert daemon.commands.call("stop", timeout=10) == {"stopping": True}
        loop.join(60)
        assert codes == [c.EXIT_OK]
        with pytest.raises(CommandFailed, match="the daemon has stopped"):
            daemon.commands.call("status", timeout=1)
    finally:
        daemon.request_stop()
        loop.join(60)
        daemon.storage.catalog.close()
