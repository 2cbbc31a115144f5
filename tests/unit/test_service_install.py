"""The systemd unit (checked with the real `systemd-analyze verify`) and the Windows Task Scheduler XML."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cctv_daemon.cli import service as cli_service
from cctv_daemon.core import constants as c
from cctv_daemon.core import winapi
from cctv_daemon.service import install as service_install
from tests.support.daemon import run_cli

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "systemd" / "cctv-daemon.service"
NS = {"t": service_install.TASK_NS}

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    unit = tmp_path / "cctv-daemon.service"
    unit.write_text(unit_text)
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


def _keys(unit_text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit_text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_shipped_unit_is_the_generated_default() -> None:
    assert SHIPPED.read_text() == service_install.render_unit(service_install.DEFAULT_UNIT)


@needs_systemd
def test_shipped_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # ExecStart must exist on this machine: substitute the venv's python, keep every other line as shipped.
    text = SHIPPED.read_text().replace(service_install.DEFAULT_UNIT.exec_start,
                                       f"{sys.executable} -m cctv_daemon run --config /etc/cctv-daemon/config.json")
    assert text != SHIPPED.read_text()
    res = _verify(text, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    k = _keys(text)
    assert k["Type"] == "notify" and k["WatchdogSec"] == str(c.SYSTEMD_WATCHDOG_S)
    assert k["KillMode"] == "mixed" and k["Restart"] == "on-failure" and k["User"] == "cctv"
    assert k["ProtectSystem"] == "strict" and k["ProtectProc"] == "invisible"
    assert k["ReadWritePaths"] == k["RequiresMountsFor"] == "/var/lib/cctv/recordings"
    assert k["RestartPreventExitStatus"] == f"{c.EXIT_USAGE} {c.EXIT_ALREADY_RUNNING}"


@needs_systemd
def test_install_service_print_fills_in_this_installation(tmp_path: Path) -> None:
    save = tmp_path / "rec ordings"  # a space: must be quoted in the unit
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"cameras": [{"cameraName": "w", "source": "webcam", "device": "/dev/video0"}],
                               "storageConfig": {"savePath": str(save)}}))
    res = run_cli("install-service", "--print", "--user", "rec", "--config", str(cfg), cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    k = _keys(res.stdout)
    assert k["ExecStart"] == f"{sys.executable} -m cctv_daemon run --config {cfg}"
    assert k["ReadWritePaths"] == k["RequiresMountsFor"] == f'"{save}"'
    assert k["User"] == k["Group"] == "rec"
    assert k["PrivateDevices"] == "no" and k["DeviceAllow"] == "char-video4linux rw"  # webcam in the config
    v = _verify(res.stdout, tmp_path)
    assert v.returncode == 0 and v.stderr == "", v.stderr


def test_unit_without_webcam_has_private_devices() -> None:
    k = _keys(service_install.render_unit(service_install.DEFAULT_UNIT))
    assert k["PrivateDevices"] == "yes" and "DeviceAllow" not in k


# -- Windows -------------------------------------------------------------------------------------------------
def _task(xml: str) -> ET.Element:
    assert xml.startswith('<?xml version="1.0" encoding="UTF-16"?>')
    return ET.fromstring(xml.encode("utf-16"))  # as schtasks reads the file we write


def test_task_xml_is_well_formed_and_complete() -> None:
    cfg = Path("C:/cctv/config.json")
    root = _task(service_install.render_task_xml(r"C:\Py\pythonw.exe", cfg, r"C:\cctv"))
    assert root.tag == f"{{{service_install.TASK_NS}}}Task"
    boot = root.find("t:Triggers/t:BootTrigger", NS)
    assert boot is not None and boot.findtext("t:Enabled", namespaces=NS) == "true"
    assert boot.findtext("t:Repetition/t:Interval", namespaces=NS) == c.TASK_REPEAT_INTERVAL
    ex = root.find("t:Actions/t:Exec", NS)
    assert ex is not None
    assert ex.findtext("t:Command", namespaces=NS) == r"C:\Py\pythonw.exe"
    assert ex.findtext("t:Arguments", namespaces=NS) == f'-m cctv_daemon run --config "{cfg}"'
    s = root.find("t:Settings", NS)
    assert s is not None
    assert s.findtext("t:RestartOnFailure/t:Interval", namespaces=NS) == "PT1M"
    assert s.findtext("t:RestartOnFailure/t:Count", namespaces=NS) == str(c.TASK_RESTART_COUNT)
    assert s.findtext("t:ExecutionTimeLimit", namespaces=NS) == "PT0S"
    assert s.findtext("t:DisallowStartIfOnBatteries", namespaces=NS) == "false"
    assert s.findtext("t:StopIfGoingOnBatteries", namespaces=NS) == "false"
    assert s.findtext("t:MultipleInstancesPolicy", namespaces=NS) == "IgnoreNew"
    p = root.find("t:Principals/t:Principal", NS)
    assert p is not None and p.findtext("t:UserId", namespaces=NS) == service_install.SYSTEM_SID


def test_task_xml_for_a_user_runs_logged_on_or_not() -> None:
    root = _task(service_install.render_task_xml("pythonw.exe", Path("c.json"), ".", user="CAM\\rec"))
    p = root.find("t:Principals/t:Principal", NS)
    assert p is not None
    assert p.findtext("t:UserId", namespaces=NS) == "CAM\\rec"
    assert p.findtext("t:LogonType", namespaces=NS) == "S4U"


def test_windows_install_registers_with_schtasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """schtasks only exists on Windows: winapi.IS_WINDOWS and winapi.schtasks_create are MOCKED here."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"cameras": [{"cameraName": "t", "source": "test"}],
                               "storageConfig": {"savePath": str(tmp_path / "rec")}}))
    seen: dict[str, object] = {}

    def fake_create(xml_file: Path, name: str) -> subprocess.CompletedProcess[str]:
        seen["name"] = name
        seen["xml"] = xml_file.read_text(encoding="utf-16")
        return subprocess.CompletedProcess(["schtasks"], 0, "SUCCESS", "")

    monkeypatch.setattr(winapi, "IS_WINDOWS", True)
    monkeypatch.setattr(winapi, "schtasks_create", fake_create)
    monkeypatch.setattr(service_install, "current_python", lambda: r"C:\Py\python.exe")
    args = argparse.Namespace(config=str(cfg), print=False, user=None, windows=False)
    assert cli_service.cmd_install_service(args) == c.EXIT_OK
    assert seen["name"] == c.SERVICE_NAME
    root = _task(str(seen["xml"]))
    assert root.findtext("t:Actions/t:Exec/t:Command", namespaces=NS) == r"C:\Py\pythonw.exe"

    monkeypatch.setattr(winapi, "schtasks_create",
                        lambda _x, _n: subprocess.CompletedProcess(["schtasks"], 1, "", "ERROR: Access is denied."))
    assert cli_service.cmd_install_service(args) == c.EXIT_RUNTIME


def test_unit_starts_after_time_sync_without_pulling_it_in() -> None:
    """Names are wall-clock times: ordered after time-sync.target; `Wants=` of it is left to NTP clients
    (systemd.special(7)); docs/service.md says how long a site without network waits."""
    for text in (SHIPPED.read_text(), service_install.render_unit(service_install.DEFAULT_UNIT)):
        k = _keys(text)
        assert "time-sync.target" in k["After"].split()
        assert "time-sync.target" not in k.get("Wants", "").split()
