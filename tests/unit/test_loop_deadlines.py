"""When the main loop wakes with every camera recording steadily (docs/benchmarks.md, "Sixth pass"): at most every
IDLE_TICK_S, but exactly at a stall deadline, every ANCHOR_TICK_S while a run's anchor is measured, and at a
component's own deadline (status.json's period, retention's timer); the snapshot's slow parts are refreshed every
COMPONENTS_PERIOD_S, at once for the `status` command, and an unchanged component status is not rebuilt.
A stand-in camera object (state, config.stallTimeout, proc.snapshot()) drives Daemon.next_wait; no ffmpeg runs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cctv_daemon.config.model import parse_config
from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.recording.camera import State
from cctv_daemon.service.commands import CommandQueue
from cctv_daemon.service.control import STATUS_FRESH_WAIT_S, ControlServer
from cctv_daemon.service.daemon import STALL_MARGIN_S, Daemon
from cctv_daemon.service.root import build_daemon
from cctv_daemon.service.snapshot import COMPONENTS_PERIOD_S, Snapshot
from cctv_daemon.service.status import StatusWriter
from tests.support.daemon import pattern_camera


def _daemon(tmp_path: Path) -> tuple[Daemon, FakeClock]:
    config = parse_config({"cameras": [{**pattern_camera("p"), "enabled": False}],
                           "storageConfig": {"savePath": str(tmp_path / "rec")},
                           "logging": {"file": None}}, base_dir=tmp_path)
    clock = FakeClock()
    daemon = build_daemon(config, "ffmpeg", clock, service=False)
    daemon.storage.retention._next_check = clock.monotonic() + 60  # as start() sets it
    return daemon, clock


class _Proc:
    def __init__(self, last_advance: float, out_us: int) -> None:
        self.last_advance, self.out_us = last_advance, out_us

    def snapshot(self) -> tuple[float, int, str | None]:
        return self.last_advance, self.out_us, None


def _camera(last_advance: float, out_us: int, stall_timeout: float = 10.0) -> Any:
    return SimpleNamespace(state=State.RECORDING, proc=_Proc(last_advance, out_us),
                           config=SimpleNamespace(stallTimeout=stall_timeout))


def test_steady_cameras_let_the_loop_sleep_the_idle_tick_but_never_past_a_stall(tmp_path: Path) -> None:
    daemon, clock = _daemon(tmp_path)
    try:
        now = clock.monotonic()
        steady = 60 * 1_000_000  # a minute of media: past the anchor window
        daemon.cameras = {"a": _camera(now, steady), "b": _camera(now - 0.2, steady)}
        assert daemon.next_wait() == pytest.approx(c.IDLE_TICK_S)
        # A camera whose media stopped 9.5 s ago: the loop wakes just after its 10 s stall deadline, not later.
        daemon.cameras["c"] = _camera(now - 9.5, steady)
        assert daemon.next_wait() == pytest.approx(0.5 + STALL_MARGIN_S)
        clock.advance(0.5 + STALL_MARGIN_S)
        assert clock.monotonic() - daemon.cameras["c"].proc.last_advance > 10.0  # Camera.tick's stall test holds
        # A short stallTimeout is met too, whatever the idle tick.
        daemon.cameras = {"d": _camera(clock.monotonic(), steady, stall_timeout=1.5)}
        assert daemon.next_wait() == pytest.approx(1.5 + STALL_MARGIN_S)
    finally:
        daemon.storage.catalog.close()


def test_a_run_measuring_its_anchor_keeps_the_one_second_tick(tmp_path: Path) -> None:
    daemon, clock = _daemon(tmp_path)
    try:
        now = clock.monotonic()
        daemon.cameras = {"a": _camera(now, 60 * 1_000_000), "new": _camera(now, c.ANCHOR_WINDOW_US // 2)}
        assert daemon.next_wait() == pytest.approx(c.ANCHOR_TICK_S)
        daemon.cameras["new"].proc.out_us = c.ANCHOR_WINDOW_US + 1
        assert daemon.next_wait() == pytest.approx(c.IDLE_TICK_S)
    finally:
        daemon.storage.catalog.close()


def test_status_json_and_retention_timer_are_deadlines_of_their_own(tmp_path: Path) -> None:
    daemon, clock = _daemon(tmp_path)
    try:
        writer = StatusWriter(tmp_path / "state", lambda: daemon.snapshot, clock)
        (tmp_path / "state").mkdir()
        daemon.components.append(writer)
        writer.start()  # writes now; the next write is due STATUS_PERIOD_S later
        clock.advance(c.STATUS_PERIOD_S - 0.3)
        assert daemon.next_wait() == pytest.approx(0.3)  # not a whole idle tick late
        clock.advance(0.3)
        assert daemon.next_wait() == 0.0
        writer.tick()
        assert writer.writes == 2
        daemon.storage.retention._next_check = clock.monotonic() + 0.7
        assert daemon.next_wait() == pytest.approx(0.7)
    finally:
        daemon.storage.catalog.close()


class _Counter:
    name = "counter"

    def __init__(self) -> None:
        self.value = 0
        self.calls = 0

    def start(self) -> None: ...

    def tick(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> dict[str, object]:
        self.calls += 1
        return {"value": self.value, "nested": {"list": [1, 2]}}


def test_component_statuses_refresh_on_their_period_and_at_once_for_the_status_command(tmp_path: Path) -> None:
    daemon, clock = _daemon(tmp_path)
    try:
        comp = _Counter()
        daemon.components.append(comp)
        first = daemon.publish(refresh_all=True)
        assert first.components["counter"]["value"] == 0
        comp.value = 1
        clock.advance(COMPONENTS_PERIOD_S - 0.5)
        assert daemon.publish().components["counter"]["value"] == 0  # carried over between refreshes
        clock.advance(0.5)
        assert daemon.publish().components["counter"]["value"] == 1
        # An unchanged status keeps its frozen value (not decoded and frozen again); a changed one does not.
        clock.advance(COMPONENTS_PERIOD_S)
        again = daemon.publish()
        assert again.components["catalog"] is first.components["catalog"]
        assert again.components["counter"]["nested"]["list"] == (1, 2)
        assert again.to_dict()["components"]["counter"] == {"value": 1, "nested": {"list": [1, 2]}}
        # The `status` command (the control socket's, through the queue) answers with every part fresh.
        comp.value = 2
        reply = daemon.commands.submit("status", {})
        assert daemon.commands.run_pending() == 1
        assert reply.wait(0)["components"]["counter"]["value"] == 2
        assert daemon.snapshot.components["counter"]["value"] == 2
        json.dumps(reply.wait(0))
    finally:
        daemon.storage.catalog.close()


def _snapshot(phase: str) -> Snapshot:
    return Snapshot(pid=1, started_at=1.0, updated_at=2.0, phase=phase, config=None, save_path="/x")


def test_control_status_comes_from_the_loop_and_from_the_snapshot_when_the_loop_does_not_answer(
        tmp_path: Path) -> None:
    commands = CommandQueue()
    commands.register("status", lambda _args: {"fresh": True})
    snap = _snapshot("starting")
    server = ControlServer(tmp_path, commands, lambda: snap, "unix")
    # Starting (the startup recovery: the loop does not run commands yet): the published snapshot, at once.
    t0 = time.monotonic()
    assert server.handle(b'{"cmd": "status"}')["result"]["phase"] == "starting"
    assert time.monotonic() - t0 < STATUS_FRESH_WAIT_S
    # Running, the loop busy: the published snapshot after STATUS_FRESH_WAIT_S.
    snap = _snapshot("running")
    t0 = time.monotonic()
    assert server.handle(b'{"cmd": "status"}')["result"]["phase"] == "running"
    assert time.monotonic() - t0 >= STATUS_FRESH_WAIT_S
    commands.run_pending()  # the late command is still answered (nobody waits for it any more)
    # Running, the loop answering: its fresh answer.
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            commands.run_pending()
            time.sleep(0.01)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        assert server.handle(b'{"cmd": "status"}')["result"] == {"fresh": True}
    finally:
        stop.set()
        t.join(5)
