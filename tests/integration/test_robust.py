"""Issue 12 with real daemons (ffmpeg test source, SQLite, signals): a corrupt catalog is moved aside and recording
goes on (5); staging stays on savePath's filesystem when stateDir is elsewhere (8); read commands run as root before
the first start create nothing, so the service user (here `nobody`) can then start and record (9); repairs go
through a running daemon (9)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.catalog.store import Catalog
from tests.conftest import DaemonFactory
from tests.support.daemon import REPO, DaemonProc, child_env, pattern_camera, run_cli, wait_for


def config(**storage: Any) -> dict[str, Any]:
    return {"cameras": [pattern_camera("t1")], "storageConfig": storage, "logging": {"level": "info"}}


def test_corrupt_catalog_is_moved_aside_and_recording_goes_on(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(config(), start=False)
    state = d.state_dir
    state.mkdir(parents=True)
    (state / "catalog.sqlite3").write_bytes(b"\x00garbage, not SQLite\n" * 200)
    d.start()
    d.wait_segments("t1", 2, 60)
    ev = d.wait_event("catalog_moved_aside", 10)[0]
    assert Path(ev["moved_to"]).read_bytes().startswith(b"\x00garbage")  # kept, not deleted
    status = json.loads(d.cli("status", "--json").stdout)
    assert status["components"]["catalog"]["movedAside"] == ev["moved_to"]
    assert "movedAside" in d.cli("status").stdout
    wait_for(lambda: len(Catalog.for_state_dir(state, d.save_path, read_only=True).segments()) >= 1, 30,
             "rows in the new catalog", proc=d.proc)
    assert d.stop(30) == 0


def test_staging_lives_on_save_path_when_state_dir_is_elsewhere(daemon_factory: DaemonFactory) -> None:
    if os.stat("/dev/shm").st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.skip("needs /dev/shm on another filesystem")
    state = Path(tempfile.mkdtemp(prefix="cctv-state-", dir="/dev/shm"))
    try:
        d = daemon_factory(config(stateDir=str(state)))
        d.wait_segments("t1", 2, 60)
        staging_root = d.save_path / ".cctv" / "staging"
        assert (staging_root / "t1").is_dir()
        assert not (state / "staging").exists()
        assert d.stop(30) == 0
        cat = Catalog.for_state_dir(state, d.save_path, read_only=True)
        assert len(cat.segments()) >= 2
        cat.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_check_rebuild_and_repair_run_inside_a_running_daemon(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory(config())
    d.wait_segments("t1", 2, 60)
    r = d.cli("check", "--rebuild", "--json")
    assert "by the running daemon" in r.stderr, r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["remaining"] == []
    d.wait_event("check_command", 10, rebuild=True)
    r = d.cli("check", "--repair")
    assert r.returncode == 0 and "by the running daemon" in r.stderr
    d.wait_segments("t1", 4, 60)  # still recording
    assert d.stop(30) == 0


# -- as an unprivileged service user ------------------------------------------------------------------------
SITE = REPO / ".venv" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


def _nobody_ok() -> str | None:
    if os.geteuid() != 0:
        return "needs root (to run commands as root and the daemon as nobody)"
    if shutil.which("runuser") is None or not SYSTEM_PYTHON.exists() or not SITE.is_dir():
        return "needs runuser, the system Python of this version and the worktree's .venv"
    probe = subprocess.run(["runuser", "-u", "nobody", "--", str(SYSTEM_PYTHON), "-c", "import pydantic, cctv_daemon"],
                           env=child_env({"PYTHONPATH": f"{REPO}:{SITE}"}), cwd="/", capture_output=True, check=False)
    if probe.returncode != 0:
        return f"nobody cannot run this checkout ({REPO}): {probe.stderr.decode(errors='replace')[-200:]}"
    return None


class NobodyDaemon(DaemonProc):
    """The daemon as the unprivileged user `nobody` (the venv's Python lives under /root: the system Python of the
    same version with the venv's packages)."""

    def start(self) -> DaemonProc:
        self._close_out()
        self.out_path = self.tmp / f"daemon-{time.time_ns()}.out"
        self.out_paths.append(self.out_path)
        self._out = self.out_path.open("wb")
        env = child_env({"PYTHONPATH": f"{REPO}:{SITE}", "HOME": str(self.tmp)})
        self.proc = subprocess.Popen(
            ["runuser", "-u", "nobody", "--", str(SYSTEM_PYTHON), "-m", "cctv_daemon", "run", "--config",
             str(self.config_path)], cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=self._out,
            stderr=subprocess.STDOUT, env=env)
        return self


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    reason = _nobody_ok()
    if reason:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="cctv-nobody-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_read_commands_as_root_before_the_first_start_create_nothing(nobody_dir: Path) -> None:
    save = nobody_dir / "rec"
    save.mkdir()
    shutil.chown(save, "nobody", "nogroup")
    d = NobodyDaemon(nobody_dir, {**config(), "storageConfig": {"savePath": str(save)}})
    shutil.chown(d.config_path, "nobody", "nogroup")
    cfg = str(d.config_path)
    assert run_cli("segments", "--config", cfg).returncode == 0
    assert run_cli("segments", "--json", "--config", cfg).returncode == 0
    assert run_cli("check", "--config", cfg).returncode == 0
    assert run_cli("status", "--config", cfg).returncode != 0  # not running
    r = run_cli("export", "--camera", "t1", "--from", "2026-01-01T00:00", "--to", "2026-01-01T00:01", "-o",
                str(nobody_dir / "x.mp4"), "--config", cfg)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert list(save.iterdir()) == [], "a read command created state as root"
    d.start()
    try:
        wait_for(lambda: len(d.segments("t1")) >= 2, 60, "2 segments recorded as nobody", proc=d.proc)
        assert (save / ".cctv" / "catalog.sqlite3").stat().st_uid == d.segments("t1")[0].stat().st_uid != 0
        # and the same read commands as root while it runs still write nothing of root's
        r = run_cli("segments", "--json", "--config", cfg)
        assert r.returncode == 0 and json.loads(r.stdout)["segments"]
        assert not [p for p in (save / ".cctv").rglob("*") if p.stat().st_uid == 0]
    finally:
        d.close()
