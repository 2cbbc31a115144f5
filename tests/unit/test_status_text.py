"""status.json's text, encoded from the snapshot's frozen parts without thawing them (Snapshot.to_json), is byte for
byte json.dumps(snapshot.to_dict(), sort_keys=True, default=str); the main loop's camera rows are reused while
nothing in them changed (CameraSnapshot.rows) and always show what `of()` would."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import pytest

from cctv_daemon.recording.camera import CameraCounters, State
from cctv_daemon.service.snapshot import CameraSnapshot, Snapshot, components_status, freeze
from cctv_daemon.service.status import StatusWriter, read_status


def _row(i: int, **kw: Any) -> CameraSnapshot:
    base = CameraSnapshot(state="recording", reason="", since=1.8e9 + i / 3, last_segment_at=1.8e9 + 10.25 * i,
                          segments=i, starts=1, reconnects=0, stalls=0, last_error=None, ffmpeg_pid=1000 + i,
                          enabled=True)
    return replace(base, **kw)


class _Comp:
    def __init__(self, name: str, value: dict[str, Any]) -> None:
        self.name, self.value = name, value

    def status(self) -> dict[str, Any]:
        return self.value


def _snap(phase: str, cameras: dict[str, CameraSnapshot], comps: dict[str, Any], disk: dict[str, Any],
          updated: float = 1.8e9 + 5) -> Snapshot:
    return Snapshot(pid=4321, started_at=1.8e9, updated_at=updated, phase=phase, config="/etc/cctv/cfg.json",
                    save_path="/srv/rec", cameras=MappingProxyType(cameras), disk=freeze(disk),
                    components=MappingProxyType(comps))


def _expected(snap: Snapshot) -> str:
    return json.dumps(snap.to_dict(), sort_keys=True, default=str)


@pytest.mark.parametrize("phase", ["starting", "running", "stopping", "stopped"])
def test_the_status_text_is_json_dumps_of_the_snapshot(phase: str) -> None:
    seen: dict[str, tuple[str, Any]] = {}
    comps = components_status([_Comp("retention", {"bytes": 10**12, "cameras": {"b": {"x": [1, 2.5]}, "a": {}},
                                                    "warnings": ["\"quoted\" \u00e9"], "path": Path("/x")}),
                               _Comp("api", {"state": "listening", "url": None, "nan": float("nan")})], seen)
    cams = {"z\u00e9bra": _row(1, last_error='stalled: "no media" \\ for 10s'), "a": _row(2),
            "lease": _row(3).with_lease({"mine": False, "state": "held", "holder": {"node": "n2"}}),
            "rec": _row(4, record_until=1.8e9 + 600.125, record_label="gate \u2192 door")}
    disk = {"path": "/srv/rec", "free_bytes": 12345678901, "low_space": False, "cap_gb": None}
    snap = _snap(phase, cams, comps, disk)
    assert snap.to_json() == _expected(snap)
    # the next write: one row and one component changed, one camera gone, one new
    comps2 = components_status([_Comp("retention", {"bytes": 10**12 + 1}),
                                _Comp("api", {"state": "listening", "url": None, "nan": float("nan")})], seen)
    assert comps2["api"] is comps["api"]
    cams2 = {**cams, "a": _row(2, segments=3), "new": _row(9, ffmpeg_pid=None, state="backoff")}
    del cams2["lease"]
    snap2 = _snap(phase, cams2, comps2, {**disk, "free_bytes": 1}, updated=1.8e9 + 10)
    assert snap2.to_json() == _expected(snap2)
    empty = _snap(phase, {}, {}, {})
    assert empty.to_json() == _expected(empty)


def test_status_json_on_disk_is_the_snapshot(tmp_path: Path) -> None:
    snap = _snap("running", {"a": _row(1)}, {}, {"free_bytes": 1})
    clock = SimpleNamespace(monotonic=lambda: 0.0)
    writer = StatusWriter(tmp_path, lambda: snap, clock)  # type: ignore[arg-type]
    writer.write()
    assert (tmp_path / "status.json").read_text() == _expected(snap) + "\n"
    assert read_status(tmp_path) == json.loads(_expected(snap))
    assert (tmp_path / "status.json").stat().st_mode & 0o777 == 0o644


def _camera(**counters: Any) -> Any:
    return SimpleNamespace(state=State.RECORDING, reason="", counters=CameraCounters(**counters),
                           proc=SimpleNamespace(pid=77), config=SimpleNamespace(enabled=True))


def test_a_camera_row_is_reused_while_nothing_in_it_changed_and_is_what_of_makes() -> None:
    seen: dict[str, tuple[tuple[Any, ...], CameraSnapshot]] = {}
    cam = _camera(segments=3, last_segment_at=1.8e9, state_since=1.7e9, last_error="rtsp://u:p@h/x refused")
    other = _camera(segments=1)
    first = CameraSnapshot.rows({"a": cam, "b": other}, {}, {}, 0.0, seen)
    assert first["a"] == CameraSnapshot.of(cam) and first["b"] == CameraSnapshot.of(other)
    assert "p@" not in str(first["a"].last_error)  # redacted as of() does it
    again = CameraSnapshot.rows({"a": cam, "b": other}, {}, {}, 0.0, seen)
    assert again["a"] is first["a"] and again["b"] is first["b"]
    cam.counters.segments += 1
    cam.counters.last_segment_at = 1.8e9 + 10
    third = CameraSnapshot.rows({"a": cam, "b": other}, {}, {}, 0.0, seen)
    assert third["a"] is not first["a"] and third["a"] == CameraSnapshot.of(cam) and third["b"] is first["b"]
    cam.state = State.BACKOFF
    assert CameraSnapshot.rows({"a": cam}, {}, {}, 0.0, seen)["a"].state == "backoff"
    assert set(seen) == {"a"}  # a camera gone is forgotten
    rec = CameraSnapshot.rows({"a": cam}, {"a": 100.0}, {"a": "door"}, 1.8e9, seen)["a"]
    assert rec == CameraSnapshot.of(cam, 1.8e9 + 100.0, "door")
