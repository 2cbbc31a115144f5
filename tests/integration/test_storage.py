"""Storage under pressure with the real daemon (test-source cameras, real SQLite, real ffmpeg):
- readiness (READY=1 on a NOTIFY_SOCKET the test listens on) within 5 s with 100 000 catalogued segments and a
  pending age prune of 10 000, which runs on retention's own thread after readiness (finding 6);
- a real full disk (a 64 MiB tmpfs as savePath filled to ENOSPC), without and with a free-space floor: the oldest
  footage makes room, recording resumes within seconds, every finished file gets its row, and logging on the
  full disk prints no tracebacks (findings 13, 15);
- a floor the disk can never meet (findings 14)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.core import constants as c
from tests.conftest import DaemonFactory
from tests.support.big_catalog import seed
from tests.support.daemon import DaemonProc, pattern_camera, run_cli, wait_for
from tests.support.tmpfs import fill, tmpfs


class NotifyListener:
    """The systemd side of sd_notify: a datagram socket that records (arrival time, message)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._done.is_set():
            try:
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue
            except OSError:
                return

    def first(self, prefix: str) -> float | None:
        return next((ts for ts, m in self.got if any(line.startswith(prefix) for line in m.splitlines())), None)

    def close(self) -> None:
        self._done.set()
        self.sock.close()
        self._thread.join(2)


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


def _status(d: DaemonProc) -> dict[str, Any] | None:
    res = d.cli("status", "--json")
    return json.loads(res.stdout) if res.returncode == 0 else None


def _retention(d: DaemonProc) -> dict[str, Any] | None:
    s = _status(d)
    return s["components"]["retention"] if s else None


@pytest.mark.timing
def test_ready_within_5s_with_100k_rows_and_a_pending_prune_of_10k(daemon_factory: DaemonFactory, tmp_path: Path,
                                                                      notify: NotifyListener) -> None:
    """Finding 6: the startup prune ran before READY=1 (and every later prune on the main loop)."""
    save = tmp_path / "rec"
    cams = [f"c{i}" for i in range(4)]
    assert seed(save, cams, rows=100_000, old=10_000) == 10_000
    cfg = {"cameras": [pattern_camera("c0", 2)] + [pattern_camera(n, 2, enabled=False) for n in cams[1:]],
           "storageConfig": {"savePath": str(save), "retentionDays": 7, "minFreeDiskGB": 0},
           "logging": {"file": None, "level": "warning"}}
    t0 = time.monotonic()
    d = daemon_factory(cfg, env={"NOTIFY_SOCKET": str(notify.path)})
    ready = wait_for(lambda: notify.first("READY=1"), 60, "READY=1", proc=d.proc)
    readiness = ready - t0
    extend = notify.first("EXTEND_TIMEOUT_USEC=")
    assert extend is not None and extend <= ready  # the start timeout is extended while recovery works
    print(f"readiness {readiness:.2f} s with 100 000 rows and a pending prune of 10 000")
    assert readiness < 5.0
    r = _retention(d)
    assert r is not None and r["segments"] > 90_000  # the prune was still pending or running at READY
    # ... and it runs to the end on retention's thread, while the main loop answers status.
    wait_for(lambda: (x := _retention(d)) and x["deleted"] >= 10_000, 300, "the 10 000 old segments pruned",
             interval=1.0, proc=d.proc)
    assert not list(save.glob("c1/*/c1_c1_*")) or len(list(save.glob("c1/*/*.mp4"))) == 22_500
    assert d.stop(60) == 0


def _storage_cfg(save: Path, **storage: Any) -> dict[str, Any]:
    return {"cameras": [pattern_camera("t1", 1)],
            "storageConfig": {"savePath": str(save), **storage},
            "supervisor": {"backoffBase": 1, "backoffCap": 30}}


def _seed_old_footage(save: Path, count: int, size: int) -> list[Path]:
    """Old segment files of ours (named as the daemon names them); the daemon catalogues them at startup."""
    from cctv_daemon.segments import names as segment_names

    t = time.time() - 3 * 86400
    paths = []
    for i in range(count):
        p = segment_names.final_path(save, "t1", "t1", t + 10 * i, t + 10 * i + 10)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\x11" * size)
        paths.append(p)
    return paths


def _new_segments(d: DaemonProc, after: float) -> list[Path]:
    return [p for p in d.segments("t1") if p.stat().st_mtime > after]


def _no_logging_errors(d: DaemonProc) -> None:
    out = d.output()
    assert "--- Logging error ---" not in out and "Traceback" not in out


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "64m") as mnt:
        yield mnt


def test_disk_full_without_floor_prunes_oldest_and_resumes(daemon_factory: DaemonFactory, disk: Path) -> None:
    """Finding 13: with minFreeDiskGB 0, after ENOSPC nothing freed space and recording never resumed; the
    catalog insert failed, leaving a file without a row. Finding 15: logging on the full disk printed tracebacks."""
    save = disk / "rec"
    old = _seed_old_footage(save, 12, 1_000_000)
    d = daemon_factory(_storage_cfg(save, minFreeDiskGB=0))
    d.wait_segments("t1", len(old) + 3, 40)
    filled_at = time.time()
    fill(disk / "filler")  # not ours: never deleted; the disk is now full to the last block
    # Recording goes on: the oldest footage makes room (within seconds, not 60-90 s).
    wait_for(lambda: len(_new_segments(d, filled_at + 1)) >= 3, 20, "3 new segments after the disk filled",
             proc=d.proc)
    resumed_after = min(p.stat().st_mtime for p in _new_segments(d, filled_at + 1)) - filled_at
    print(f"first segment {resumed_after:.1f} s after the disk filled")
    assert resumed_after < 10
    assert not old[0].exists()  # the oldest went first
    assert (disk / "filler").exists()
    time.sleep(0)  # (no waiting on time: the next checks read the catalog through the CLI)
    assert not d.events("subscriber_failed")
    _no_logging_errors(d)
    assert d.stop(30) == 0
    check = d.cli("check")
    assert "file-without-row" not in check.stdout, check.stdout
    lost = d.events("footage_lost")
    assert not lost  # no S3: deleting the oldest is today's rule, not "lost"


def test_disk_full_with_a_floor_prunes_to_the_floor(daemon_factory: DaemonFactory, disk: Path) -> None:
    save = disk / "rec"
    old = _seed_old_footage(save, 12, 1_000_000)
    d = daemon_factory(_storage_cfg(save, minFreeDiskGB=0.008))  # 8 MB floor on a 64 MiB disk
    d.wait_segments("t1", len(old) + 2, 40)
    start = time.time()
    fill(disk / "filler", leave=2_000_000)  # 2 MB left: under the floor, not yet ENOSPC
    wait_for(lambda: (r := _retention(d)) and r["freeBytes"] >= 8_000_000 and r, 30, "floor restored",
             proc=d.proc)
    wait_for(lambda: len(_new_segments(d, start + 1)) >= 3, 20, "recording goes on", proc=d.proc)
    assert not old[0].exists()
    r = _retention(d)
    assert r is not None and r["deletedByReason"].get("min-free", 0) >= 6
    assert r["floorUnreachable"] is False
    _no_logging_errors(d)
    assert d.stop(30) == 0


def test_floor_larger_than_disk_or_free_space(daemon_factory: DaemonFactory, disk: Path, tmp_path: Path) -> None:
    """Finding 14: the default 1 GB floor on a smaller disk deleted every segment the moment it was finished."""
    save = disk / "rec"
    cfg_path = tmp_path / "config.json"

    def check_config(floor: float) -> Any:
        cfg_path.write_text(json.dumps(_storage_cfg(save, minFreeDiskGB=floor)))
        return run_cli("check-config", "--config", str(cfg_path))

    res = check_config(1)  # the 1 GB default on a 64 MiB disk
    assert res.returncode == c.EXIT_USAGE
    assert "storageConfig.minFreeDiskGB: 1 GB is more than the whole disk" in res.stderr
    assert "Traceback" not in res.stderr
    fill(disk / "filler", leave=20_000_000)  # 20 MB free, none of it ours
    res = check_config(0.04)
    assert res.returncode == c.EXIT_USAGE and "0.04 GB cannot be met" in res.stderr, res.stderr
    assert check_config(0.01).returncode == 0
    # `run` with a floor larger than the disk: exit 2, nothing created.
    d = daemon_factory(_storage_cfg(save, minFreeDiskGB=1))
    assert d.wait(30) == c.EXIT_USAGE
    assert not (save / ".cctv").exists()
    # `run` with a floor larger than free space: records, says so loudly, deletes nothing for the floor.
    d = daemon_factory(_storage_cfg(save, minFreeDiskGB=0.04))
    d.wait_segments("t1", 4, 40)
    ev = d.wait_event("min_free_unreachable", 20)
    assert ev[0]["level"] == "error"
    r = wait_for(lambda: _retention(d), 10, "status")
    assert r["floorUnreachable"] is True and r["deleted"] == 0
    assert d.stop(30) == 0
