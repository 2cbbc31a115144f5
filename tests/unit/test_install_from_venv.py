"""Installing the service from the README's venv: the README says how to run the commands, and install-service
checks (as root, for real, with runuser) that the service account can run the unit's command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cctv_daemon.service import install as service_install

REPO = Path(__file__).resolve().parents[2]
as_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                             reason="needs root and runuser (util-linux)")


def _blocks(markdown: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", markdown, re.S)


def test_readme_everyday_commands_run_from_the_setup_venv() -> None:
    """After the README's set-up command (it installs into .venv), `cctv-daemon` is not on PATH: the everyday
    block must activate that venv first, and `sudo` lines (sudo resets PATH) must name the venv's binary."""
    readme = (REPO / "README.md").read_text()
    setup, ci = _blocks(readme)[:2]
    assert "python3 -m venv .venv && .venv/bin/pip install ." in setup  # the set-up commands, unchanged
    assert ci.strip() == "bash .ci/test"
    everyday = next(b for b in _blocks(readme) if "cctv-daemon status" in b)
    lines = [line.split("#")[0].strip() for line in everyday.splitlines() if line.strip()]
    assert lines[0] == ". .venv/bin/activate", lines[0]
    for line in lines:
        if line.startswith("sudo"):
            assert line.startswith("sudo .venv/bin/cctv-daemon "), line
    # the activation line works: run from the repository root, where the set-up command made .venv
    venv = REPO / ".venv" / "bin" / "activate"
    if venv.exists():
        res = subprocess.run(["bash", "-c", f"{lines[0]} && cctv-daemon --version"], cwd=REPO,
                             capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")})
        assert res.returncode == 0 and res.stdout.startswith("cctv-daemon "), res


@as_root
def test_service_user_that_does_not_exist_is_named_with_the_fix() -> None:
    problem = service_install.service_user_problem("no-such-cctv-user", ["/usr/bin/true"])
    assert problem is not None and "'no-such-cctv-user' does not exist" in problem and "useradd" in problem


@as_root
def test_service_user_that_cannot_read_the_venv_is_refused(tmp_path: Path) -> None:
    # tmp_path lives under /tmp/pytest-of-root (0700), like a venv under /root: `nobody` cannot reach it.
    fake_python = tmp_path / "venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    fake_python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    fake_python.chmod(0o755)
    problem = service_install.service_user_problem("nobody", [str(fake_python), "-m", "cctv_daemon", "--version"])
    assert problem is not None and "user 'nobody' cannot run" in problem and str(fake_python) in problem
    assert "/opt/cctv-daemon/venv" in problem
    assert service_install.service_user_problem("nobody", ["/usr/bin/env", "true"]) is None


@as_root
def test_install_service_refuses_before_writing_the_unit(tmp_path: Path) -> None:
    target = Path("/etc/systemd/system/cctv-daemon.service")
    if target.exists():
        pytest.skip("a cctv-daemon unit is installed on this machine")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"cameras": [{"cameraName": "a", "source": "test"}],
                               "storageConfig": {"savePath": str(tmp_path / "rec")}}))
    base = [sys.executable, "-m", "cctv_daemon", "install-service", "--user", "no-such-cctv-user",
            "--config", str(cfg)]
    res = subprocess.run(base, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 1 and "not installed" in res.stderr and "useradd" in res.stderr, res
    assert not target.exists()
    res = subprocess.run([*base, "--print"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 0 and "ExecStart=" in res.stdout and "warning:" in res.stderr, res
