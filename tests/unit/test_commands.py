"""The command queue (answers, errors, timeouts), the immutable snapshot, and camera state events on the bus."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from types import MappingProxyType

import pytest

from cctv_daemon.config.model import CameraConfig, SupervisorConfig
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.core.events import CameraStateChanged, EventBus, FinishedSegment
from cctv_daemon.recording.camera import Camera, State
from cctv_daemon.service.commands import CommandError, CommandFailed, CommandQueue, CommandTimeout
from cctv_daemon.service.snapshot import CameraSnapshot, Snapshot, freeze, thaw


def test_commands_are_executed_by_the_loop_and_answered() -> None:
    q = CommandQueue()
    ran_on: list[str] = []

    def add(args: object) -> int:
        ran_on.append(threading.current_thread().name)
        assert isinstance(args, dict)
        return int(args["a"]) + int(args["b"])

    q.register("add", add)
    reply = q.submit("add", {"a": 2, "b": 3})
    assert not reply.done  # nothing runs until the loop says so
    with pytest.raises(CommandTimeout):
        reply.wait(0.05)
    assert q.run_pending() == 1
    assert reply.wait(0) == 5 and ran_on == [threading.current_thread().name]

    # From another thread, with the loop running meanwhile.
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(q.call("add", {"a": 1, "b": 1}, timeout=5)))
    t.start()
    while t.is_alive():
        q.run_pending()
        t.join(0.01)
    assert out == [2]


def test_refusals_failures_unknown_commands_and_close() -> None:
    q = CommandQueue()

    def refuse(_args: object) -> None:
        raise CommandError("unknown camera 'gate' (configured: t1)")

    def crash(_args: object) -> None:
        raise RuntimeError("boom")

    q.register("refuse", refuse)
    q.register("crash", crash)
    r1, r2 = q.submit("refuse"), q.submit("crash")
    q.run_pending()
    with pytest.raises(CommandFailed, match="unknown camera 'gate'"):
        r1.wait(0)
    with pytest.raises(CommandFailed, match="crash failed: RuntimeError: boom"):
        r2.wait(0)
    unknown = q.submit("retry_uploads")  # answered at once: no handler registered (yet)
    with pytest.raises(CommandFailed, match="retry_uploads: not supported"):
        unknown.wait(0)
    q.register("retry_uploads", lambda _a: {"retried": 0})  # registering a handler is one line
    late = q.submit("retry_uploads")
    q.run_pending()
    assert late.wait(0) == {"retried": 0}

    pending = q.submit("refuse")
    q.close("the daemon has stopped")
    with pytest.raises(CommandFailed, match="the daemon has stopped"):
        pending.wait(0)
    with pytest.raises(CommandFailed, match="the daemon has stopped"):
        q.submit("crash").wait(0)


def test_snapshot_is_immutable_and_its_dict_is_a_copy() -> None:
    cam = CameraSnapshot(state="recording", reason="media flowing", since=1.0, last_segment_at=2.0, segments=3,
                         starts=1, reconnects=0, stalls=0, last_error=None, ffmpeg_pid=42, enabled=True)
    snap = Snapshot(pid=1, started_at=0.0, updated_at=5.0, phase="running", config=None, save_path="/rec",
                    cameras=MappingProxyType({"t1": cam}), disk=freeze({"free_bytes": 10}),
                    components=freeze({"retention": {"cameras": {"t1": {"segments": 3}}, "list": [1, 2]}}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.phase = "stopped"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cam.state = "stopped"  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.cameras["t2"] = cam  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.components["retention"]["cameras"]["t1"]["segments"] = 0  # type: ignore[index]
    assert isinstance(snap.components["retention"]["list"], tuple)
    d = snap.to_dict()
    d["cameras"]["t1"]["state"] = "changed"
    d["components"]["retention"]["list"].append(3)
    assert snap.to_dict()["cameras"]["t1"]["state"] == "recording"
    assert snap.to_dict()["components"]["retention"]["list"] == [1, 2]
    assert thaw(freeze({"a": [1, {"b": 2}]})) == {"a": [1, {"b": 2}]}
    assert snap.summary() == "1 recording"
    stopping = dataclasses.replace(snap, phase="stopped").to_dict()
    assert stopping["stopped"] is True and stopping["stopping"] is True


def test_camera_state_transitions_reach_a_bus_subscriber(tmp_path: Path) -> None:
    bus = EventBus()
    got: list[CameraStateChanged] = []
    segments: list[FinishedSegment] = []
    everything: list[object] = []
    bus.on(CameraStateChanged, "api", got.append)
    bus.subscribe("catalog", segments.append)
    bus.subscribe_all("metrics", everything.append)
    clock = FakeClock()
    cfg = CameraConfig(cameraName="c1", videoFeedId="c1", source="test")
    sup = SupervisorConfig(backoffBase=1.0, backoffCap=8.0, steadyAfter=60.0, stopTimeout=5.0)
    # An ffmpeg that does not exist: the start fails for real and the camera goes to backoff.
    cam = Camera(cfg, sup, str(tmp_path / "no-such-ffmpeg"), tmp_path, clock, on_state=bus.publish)
    cam.start()
    assert cam.state == State.BACKOFF
    assert got == [CameraStateChanged("c1", "stopped", "backoff", "stream ended", clock.time())]
    cam.stop()
    assert [(e.old, e.new) for e in got] == [("stopped", "backoff"), ("backoff", "stopped")]
    assert segments == [] and everything == got  # segment subscribers see only segments
