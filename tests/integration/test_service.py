"""Running as a service, with real daemons (`python -m cctv_daemon run`, test-source cameras, 1 s segments):
single instance, status/stop from other processes, crash recovery of the lock, sd_notify, config reload."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.core import constants as c
from cctv_daemon.segments.names import parse_file_name
from tests.conftest import DaemonFactory
from tests.support.daemon import DaemonProc, pattern_camera, wait_for


def _config(*cams: dict[str, Any]) -> dict[str, Any]:
    return {"cameras": list(cams), "logging": {"file": None}}


def _status(d: DaemonProc) -> dict[str, Any] | None:
    res = d.cli("status", "--json")
    if res.returncode != 0:
        return None
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def _recording(d: DaemonProc, *names: str) -> dict[str, Any] | None:
    s = _status(d)
    if s and all(s["cameras"].get(n, {}).get("state") == "recording" for n in names):
        return s
    return None


def test_single_instance_status_stop_and_crash(daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    cfg = _config(pattern_camera("t1"))
    first = daemon_factory(cfg)
    assert first.proc is not None
    s = wait_for(lambda: _recording(first, "t1"), 30, "t1 recording per status")
    assert s["running"] is True and s["pid"] == first.proc.pid

    # A second `run` on the same savePath: refused with exit 3, naming the pid; the first keeps recording.
    second = daemon_factory(cfg)
    assert second.proc is not None
    assert second.proc.wait(30) == c.EXIT_ALREADY_RUNNING
    assert f"pid {first.proc.pid}" in second.output()
    before = s["cameras"]["t1"]["segments"]
    wait_for(lambda: (x := _status(first)) and x["cameras"]["t1"]["segments"] >= before + 2, 20,
             "first daemon still finishing segments")
    assert first.proc.poll() is None
    assert not list((first.state_dir / "staging").glob("*/*.tmp-recovered*"))

    human = first.cli("status")
    assert human.returncode == 0, human.stderr
    assert f"pid {first.proc.pid}" in human.stdout
    row = next(line for line in human.stdout.splitlines() if line.startswith("t1 "))
    assert "recording" in row

    # SIGKILL: the lock goes with the process; a new start is not blocked by the leftover lockfile.
    first.kill()
    assert (first.state_dir / c.LOCK_FILENAME).exists()
    assert first.cli("status").returncode == c.EXIT_NOT_RUNNING
    third = daemon_factory(cfg)
    assert third.proc is not None
    wait_for(lambda: (x := _recording(third, "t1")) and x["pid"] == third.proc.pid, 30, "restart after SIGKILL")

    stop = third.cli("stop", "--timeout", "30")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert third.proc.wait(5) == 0  # stop waited for the exit
    assert third.cli("status").returncode == c.EXIT_NOT_RUNNING
    not_running = third.cli("stop")
    assert not_running.returncode == c.EXIT_NOT_RUNNING and "not running" in not_running.stdout
    j = json.loads(third.cli("status", "--json").stdout)
    assert j["running"] is False


@pytest.mark.timing
def test_systemd_notify_ready_watchdog_stopping(daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    got: list[tuple[float, str]] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            try:
                data = sock.recv(4096)  # stamped when it arrives, not when the wait for it began
                got.append((time.monotonic(), data.decode()))
            except TimeoutError:
                continue
            except OSError:
                return

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    try:
        d = daemon_factory(_config(pattern_camera("n1")),
                           env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"})
        wait_for(lambda: any(m.startswith("READY=1") for _, m in got), 30, "READY=1")
        ready_at = next(ts for ts, m in got if m.startswith("READY=1"))
        wait_for(lambda: sum(m == "WATCHDOG=1" for ts, m in got if ts > ready_at) >= 4, 10, "4 watchdog pings")
        ready = next(m for _, m in got if m.startswith("READY=1"))
        assert "STATUS=" in ready
        pings = [ts for ts, m in got if m == "WATCHDOG=1"]
        assert max(b - a for a, b in itertools.pairwise(pings)) < 1.0  # within WatchdogSec
        assert d.stop() == 0
        wait_for(lambda: any(m.startswith("STOPPING=1") for _, m in got), 5, "STOPPING=1")
    finally:
        done.set()
        sock.close()
        t.join(2)


def _pids(s: dict[str, Any]) -> dict[str, int | None]:
    return {name: cam["ffmpeg_pid"] for name, cam in s["cameras"].items()}


def test_reload_adds_removes_changes_and_keeps_unchanged_recording(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(_config(pattern_camera("keep"), pattern_camera("gone"), pattern_camera("chg")))
    s0 = wait_for(lambda: _recording(d, "keep", "gone", "chg"), 40, "3 cameras recording")
    pids0 = _pids(s0)
    d.wait_segments("keep", 2, 20)

    d.write_config({**_config(pattern_camera("keep"), pattern_camera("chg", duration=2), pattern_camera("new")),
                    "storageConfig": {"savePath": str(d.save_path)}})
    res = d.cli("reload")
    assert res.returncode == 0, res.stderr

    def applied() -> dict[str, Any] | None:
        s = _recording(d, "keep", "chg", "new")
        if s and set(s["cameras"]) == {"keep", "chg", "new"} and s["cameras"]["chg"]["ffmpeg_pid"] != pids0["chg"]:
            return s
        return None

    s1 = wait_for(applied, 40, "reload applied")
    assert _pids(s1)["keep"] == pids0["keep"]  # unchanged camera: same ffmpeg, never restarted
    assert s1["cameras"]["keep"]["starts"] == 1
    assert s1["components"]["reload"]["last_reload"]["changed"] == ["chg"]
    assert d.events("camera_removed", camera="gone") and d.events("camera_state", camera="gone", state="stopped")

    # An invalid file (SIGHUP path): rejected with all its errors in one event; the running config stays.
    d.write_config({"cameras": [{"cameraName": "keep", "source": "test", "videoDuration": -1, "bogus": 1}],
                    "storageConfig": {"savePath": str(d.save_path)}, "logging": {"file": None}})
    assert d.cli("reload").returncode == c.EXIT_USAGE  # the CLI refuses before asking the daemon
    d.signal(signal.SIGHUP)
    ev = d.wait_event("reload_rejected", 20)[0]
    assert len(ev["errors"]) >= 2
    s2 = wait_for(lambda: (x := _status(d)) and x["components"]["reload"]["last_reload"]["ok"] is False and x,
                  10, "rejection in status")
    assert set(s2["cameras"]) == {"keep", "chg", "new"}
    assert _pids(s2) == _pids(s1)
    d.wait_segments("new", 2, 20)
    assert d.stop() == 0

    # keep's segments of its one run touch: each one starts where the previous one ended.
    names = [parse_file_name(p.name, "keep") for p in d.segments("keep")]
    assert all(n is not None for n in names) and len(names) >= 4
    spans = sorted((n.start, n.end) for n in names if n is not None)
    for (_, prev_end), (start, _) in itertools.pairwise(spans):
        assert start == prev_end
    assert os.path.isdir(d.save_path / "gone")


def test_stop_times_out_on_a_frozen_daemon_then_request_is_honoured(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(_config(pattern_camera("f1")))
    assert d.proc is not None
    wait_for(lambda: _recording(d, "f1"), 30, "f1 recording")
    d.signal(signal.SIGSTOP)  # the main loop cannot poll the control folder
    try:
        res = d.cli("stop", "--timeout", "1")
        assert res.returncode == c.EXIT_TIMEOUT, res.stdout + res.stderr
        assert f"pid {d.proc.pid} still running" in res.stderr
    finally:
        d.signal(signal.SIGCONT)
    assert d.proc.wait(20) == 0  # the pending request is acted on once it runs again
