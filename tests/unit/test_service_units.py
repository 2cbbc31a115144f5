"""Unit tests of the service layer: lock, sd_notify, reload diff, status formatting."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cctv_daemon.config.model import parse_config
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.service import instance_lock, sd_notify
from cctv_daemon.service.instance_lock import AlreadyRunning, InstanceLock
from cctv_daemon.service.reload import diff_cameras, needs_restart
from cctv_daemon.service.status import component_name, format_human


# -- instance lock ---------------------------------------------------------------------------------------
def test_second_lock_is_refused_and_names_the_holder(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path)
    owner = first.acquire(save_path=tmp_path)
    assert owner.pid == os.getpid()
    with pytest.raises(AlreadyRunning) as exc:
        InstanceLock(tmp_path).acquire()  # flock is per open file: a second open conflicts even in-process
    assert exc.value.owner is not None and exc.value.owner.pid == os.getpid()
    assert instance_lock.running_owner(tmp_path) == owner
    first.release()
    assert instance_lock.running_owner(tmp_path) is None
    assert instance_lock.lock_path(tmp_path).exists()  # never deleted
    InstanceLock(tmp_path).acquire()  # free again


def test_stale_lockfile_of_a_dead_process_does_not_block(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    path = instance_lock.lock_path(tmp_path)
    path.write_text(json.dumps({"pid": int(dead.stdout), "create_time": 1.0, "started_at": 1.0}))
    assert instance_lock.running_owner(tmp_path) is None
    # pid reused by a live process with another start time (ours): still not "running"
    path.write_text(json.dumps({"pid": os.getpid(), "create_time": 1.0, "started_at": 1.0}))
    assert instance_lock.running_owner(tmp_path) is None
    owner = InstanceLock(tmp_path).acquire()
    assert instance_lock.read_owner(path) == owner


def test_garbage_lockfile_is_not_an_owner(tmp_path: Path) -> None:
    path = instance_lock.lock_path(tmp_path)
    path.write_text("not json")
    assert instance_lock.read_owner(path) is None
    assert instance_lock.running_owner(tmp_path) is None


def test_windows_lock_calls_use_msvcrt_past_the_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """msvcrt does not exist on Linux: this test MOCKS it to check winapi's calls (offset, mode, unlock)."""
    import types

    from cctv_daemon.core import winapi

    calls: list[tuple[int, int, int]] = []
    held: set[int] = set()

    def locking(fd: int, mode: int, nbytes: int) -> None:
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        calls.append((pos, mode, nbytes))
        if mode == 2 and pos in held:
            raise OSError("locked")
        (held.add if mode == 2 else held.discard)(pos)

    fake = types.SimpleNamespace(LK_NBLCK=2, LK_UNLCK=0, locking=locking)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        assert winapi.lock_nb(fd) is True
        assert winapi.lock_nb(fd) is False
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # position restored: the pid text goes at the start
        winapi.unlock(fd)
        assert winapi.lock_nb(fd) is True
    finally:
        os.close(fd)
    assert calls[0] == (winapi.LOCK_OFFSET, 2, 1)
    assert (winapi.LOCK_OFFSET, 0, 1) in calls


# -- sd_notify -----------------------------------------------------------------------------------------------
def test_notify_socket_address_and_watchdog_interval() -> None:
    assert sd_notify.socket_address({"NOTIFY_SOCKET": "@abc"}) == "\0abc"
    assert sd_notify.socket_address({"NOTIFY_SOCKET": "/run/x"}) == "/run/x"
    assert sd_notify.socket_address({}) is None
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert sd_notify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_notifier_sends_ready_watchdog_status_stopping_to_a_real_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    clock = FakeClock()
    state = {"s": "1 starting"}
    n = sd_notify.SystemdNotifier(lambda: state["s"], env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"},
                                  clock=clock)
    try:
        n.ready()
        assert sock.recv(4096) == b"READY=1\nSTATUS=1 starting"
        n.tick()
        assert sock.recv(4096) == b"WATCHDOG=1"
        n.tick()  # < 1 s later: no ping, no status change
        clock.advance(1.0)
        state["s"] = "1 recording"
        n.tick()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert sock.recv(4096) == b"STATUS=1 recording"
        n.stopping()
        assert sock.recv(4096).startswith(b"STOPPING=1")
    finally:
        sock.close()


def test_notifier_without_socket_is_silent() -> None:
    n = sd_notify.SystemdNotifier(lambda: "x", env={})
    n.ready()
    n.tick()
    assert n.send("READY=1") is False


# -- reload diff ---------------------------------------------------------------------------------------------
def _cfg(cameras: list[dict[str, object]], **top: object) -> object:
    return parse_config({"cameras": cameras, "storageConfig": {"savePath": "/tmp/rec"}, **top})


def test_diff_cameras_added_removed_changed_unchanged() -> None:
    old = _cfg([{"cameraName": "a", "source": "test"}, {"cameraName": "b", "source": "test"},
                {"cameraName": "c", "source": "test"}, {"cameraName": "e", "source": "test"}])
    new = _cfg([{"cameraName": "a", "source": "test"}, {"cameraName": "c", "source": "test", "videoDuration": 5},
                {"cameraName": "d", "source": "test"}, {"cameraName": "e", "source": "test", "enabled": False}])
    d = diff_cameras(old, new)  # type: ignore[arg-type]
    assert [x.cameraName for x in d.added] == ["d"]
    assert sorted(d.removed) == ["b", "e"]
    assert [x.cameraName for x in d.changed] == ["c"] and d.changed[0].videoDuration == 5
    assert d.unchanged == ["a"]


def test_needs_restart_lists_sections_not_applied_live() -> None:
    old = _cfg([{"cameraName": "a", "source": "test"}])
    new = _cfg([{"cameraName": "a", "source": "test"}], logging={"level": "debug"},
               s3Config={"s3Bucket": "my-bucket"})
    assert needs_restart(old, new) == ["s3Config", "logging"]  # type: ignore[arg-type]
    assert needs_restart(old, dataclasses.replace(old)) == []  # type: ignore[type-var]


# -- status output ---------------------------------------------------------------------------------------------
def test_component_name_and_human_table() -> None:
    class UploadQueueThing:
        pass

    assert component_name(UploadQueueThing()) == "upload_queue_thing"
    now = 1_800_000_100.0
    text = format_human({
        "pid": 7, "started_at": now - 100, "config": "/c.json", "save_path": "/rec",
        "cameras": {"gate": {"state": "backoff", "since": now - 5, "last_segment_at": now - 30, "segments": 12,
                             "reconnects": 3, "stalls": 1, "last_error": "connection refused"}},
        "disk": {"path": "/rec", "used_bytes": 5e9, "total_bytes": 10e9, "free_bytes": 0.5e9, "min_free_gb": 1.0,
                 "cap_gb": 100, "low_space": True},
        "components": {
            "uploader": {"state": "retrying", "queue_length": 4, "oldest_pending_age_s": 30.0, "uploads_done": 2,
                         "bytes_uploaded": 2_500_000, "last_error": "EndpointConnectionError"},
            "retention": {"bytes": 1_500_000, "limitBytes": 100_000_000_000, "segments": 3, "deleted": 1,
                          "deletedBytes": 500_000, "unuploadedDeleted": 1, "shortOfSpace": True},
            "other": {"x": 1, "empty": None},
        },
    }, now=now)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("CAMERA"))
    row = next(line for line in lines if line.startswith("gate"))
    assert header.index("STATE") == row.index("backoff")
    assert "(30s ago)" in row and "connection refused" in row
    assert "5.0 GB used of 10.0 GB, 0.5 GB free (min free 1.0 GB, cap 100 GB)  LOW SPACE" in text
    assert ("uploads: retrying, queue 4 (oldest waiting 30s), done 2 (2.5 MB), last error: EndpointConnectionError"
            in text)
    assert "footage: 1.5 MB of cap 100.0 GB in 3 segments; deleted 1 (500.0 kB), 1 of them NOT UPLOADED" in text
    assert "SHORT OF SPACE" in text
    assert "other: x=1" in text and "empty" not in text


def test_human_status_says_why_footage_is_over_the_cap_or_short_of_space() -> None:
    """Issue 12, Decisions: not-yet-uploaded footage may exceed the size cap, "status and a warning say so". The
    human `status` showed only the JSON's `warnings` as nothing (the size over the cap, no reason; an unreachable
    floor only as SHORT OF SPACE)."""
    now = 1_800_000_100.0
    retention = {"bytes": 238_000, "limitBytes": 100_000, "segments": 8, "deleted": 2, "deletedBytes": 60_000,
                 "lost": {"count": 2, "bytes": 60_000, "oldest": now - 50}, "shortOfSpace": True,
                 "warnings": ["2 segment(s) deleted before upload (60000 bytes)",
                              "minFreeDiskGB unreachable: 100 bytes free, 238000 bytes of our footage, floor 5000000",
                              "total-cap: over the size cap with footage not uploaded yet (kept until uploaded)"]}
    text = format_human({"pid": 7, "started_at": now - 100, "cameras": {}, "disk": {},
                         "components": {"retention": retention}}, now=now)
    lines = text.splitlines()
    assert "  warning: total-cap: over the size cap with footage not uploaded yet (kept until uploaded)" in lines
    assert ("  warning: minFreeDiskGB unreachable: 100 bytes free, 238000 bytes of our footage, floor 5000000"
            in lines)
    assert "FOOTAGE LOST: 2 segment(s)" in text
    assert not any("warning: 2 segment(s) deleted before upload" in line for line in lines)  # said once already


def test_human_status_shows_a_recovered_uploader_error_as_history() -> None:
    """Acceptance audit: a recovered uploader kept showing `last error: NoSuchBucket` as if it were current."""
    now = 1_800_000_100.0
    base = {"state": "ok", "queue_length": 0, "uploads_done": 5, "bytes_uploaded": 5_000}

    def line(uploader: dict[str, object]) -> str:
        text = format_human({"pid": 7, "started_at": now - 100, "cameras": {}, "disk": {},
                             "components": {"uploader": uploader}}, now=now)
        return next(x for x in text.splitlines() if x.startswith("uploads:"))

    current = line({**base, "state": "error", "last_error": "NoSuchBucket: gone", "last_error_at": now - 10})
    assert "last error: NoSuchBucket: gone at " in current and "(10s ago)" in current
    recovered = line({**base, "last_error": None, "last_error_at": None, "recovered_error": "NoSuchBucket: gone",
                      "recovered_error_at": now - 300, "recovered_at": now - 180})
    assert "last error" not in recovered and recovered.endswith(", recovered 3m ago from: NoSuchBucket: gone")
    assert line(dict(base)) == "uploads: ok, queue 0, done 5 (5.0 kB)"  # never failed: nothing said
