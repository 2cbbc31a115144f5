"""Commands for running as a service: status, stop, reload (through the control socket, service/control.py, with
status.json and signals as fallbacks), install-service; and the single-instance lock that `run` uses."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cctv_daemon.cli.common import command, load_or_report
from cctv_daemon.config.model import Config, ConfigError, load_config
from cctv_daemon.core import constants as c
from cctv_daemon.core import winapi
from cctv_daemon.service import install as service_install
from cctv_daemon.service import instance_lock
from cctv_daemon.service.commands import CommandFailed, CommandTimeout
from cctv_daemon.service.control import ControlUnavailable, send_command
from cctv_daemon.service.instance_lock import AlreadyRunning, InstanceLock, Owner

STATUS_ASK_S = 3.0  # `status`: how long the control socket may take before status.json is read instead
STOP_ASK_S = 5.0  # `stop`: how long the socket may take to accept the request before SIGTERM is sent instead
RELOAD_ASK_S = 30.0


def _err(msg: str) -> None:
    print(f"cctv-daemon: {msg}", file=sys.stderr)


# -- used by `run` -------------------------------------------------------------------------------------------
def acquire_or_report(config: Config) -> InstanceLock | int:
    """The instance lock for this recording folder, or an exit code after a clear message."""
    lock = InstanceLock(config.storageConfig.state_dir)
    try:
        lock.acquire(config.storageConfig.savePath, config.path)
    except AlreadyRunning as exc:
        owner = exc.owner
        since = ""
        if owner is not None:
            since = time.strftime(", started %Y-%m-%d %H:%M:%S", time.localtime(owner.started_at))
        who = f"pid {owner.pid}{since}" if owner else "another process"
        _err(f"already running: {who}, recording into {config.storageConfig.savePath} "
             f"(lock {exc.lock_file}). Use `cctv-daemon status` or `cctv-daemon stop`.")
        return c.EXIT_ALREADY_RUNNING
    except OSError as exc:
        _err(f"cannot create lock file {lock.path}: {exc.strerror or exc}")
        return c.EXIT_RUNTIME
    return lock


def state_dir_for(config_path: str) -> tuple[Path, Path] | None:
    """(savePath, state dir) of a config. status/stop must work even while the file has errors elsewhere
    (e.g. being edited for a reload), so on errors they are read leniently from storageConfig alone."""
    try:
        config = load_config(config_path)
        return config.storageConfig.savePath, config.storageConfig.state_dir
    except ConfigError:
        pass
    try:
        storage = json.loads(Path(config_path).read_text(encoding="utf-8"))["storageConfig"]
        base = Path(config_path).resolve().parent
        save = base / Path(storage["savePath"]).expanduser()
        state = base / Path(storage["stateDir"]).expanduser() if storage.get("stateDir") else save / c.STATE_DIRNAME
        return save, state
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        load_or_report(config_path)  # prints every error
        return None


# -- status --------------------------------------------------------------------------------------------------
def _not_running(args: argparse.Namespace, reason: str, save_path: Path) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"schema": c.STATUS_SCHEMA, "running": False, "reason": reason,
                          "save_path": str(save_path)}, indent=1, sort_keys=True))
    else:
        print(f"cctv-daemon is not running ({reason})")
    return c.EXIT_NOT_RUNNING


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (schema in docs/cli.md)")


@command("status", "show what the running daemon is doing (exit 4 if it is not running)", _status_args)
def cmd_status(args: argparse.Namespace) -> int:
    dirs = state_dir_for(args.config)
    if dirs is None:
        return c.EXIT_USAGE
    save_path, state_dir = dirs
    from cctv_daemon.service import status as status_report

    owner = instance_lock.running_owner(state_dir)
    if owner is None:
        return _not_running(args, f"no daemon holds {instance_lock.lock_path(state_dir)}", save_path)
    data: dict[str, Any] | None = None
    try:  # the live snapshot through the control socket; status.json when it does not answer (other user, stuck)
        answer = send_command(state_dir, "status", timeout=STATUS_ASK_S, pid=owner.pid)
        data = answer if isinstance(answer, dict) else None
    except (ControlUnavailable, CommandFailed):
        pass
    if data is None:
        data = status_report.read_status(state_dir)
    now = time.time()
    if data is None:
        return _not_running(args, f"pid {owner.pid} holds the lock but wrote no status yet "
                                  f"({status_report.status_path(state_dir)})", save_path)
    age = now - float(data.get("updated_at", 0))
    if data.get("pid") != owner.pid:
        return _not_running(args, f"pid {owner.pid} holds the lock but status.json is from pid "
                                  f"{data.get('pid')}", save_path)
    if age > c.STATUS_STALE_S:
        return _not_running(args, f"status.json is {age:.0f} s old (pid {owner.pid} holds the lock but is "
                                  "not updating it: hung?)", save_path)
    data.update(running=True, age_s=round(age, 1))
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True))
    else:
        print(status_report.format_human(data, now))
    return c.EXIT_OK


# -- stop / reload -------------------------------------------------------------------------------------------
def _stop_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=c.DEFAULT_STOP_WAIT_S,
                   help=f"seconds to wait for the daemon to exit (default {c.DEFAULT_STOP_WAIT_S:g})")


def _gone(state_dir: Path, owner: Owner) -> bool:
    current = instance_lock.running_owner(state_dir)
    return current is None or current.pid != owner.pid


@command("stop", "stop the running daemon gracefully and wait until it has exited", _stop_args)
def cmd_stop(args: argparse.Namespace) -> int:
    dirs = state_dir_for(args.config)
    if dirs is None:
        return c.EXIT_USAGE
    _save_path, state_dir = dirs
    owner = instance_lock.running_owner(state_dir)
    if owner is None:
        print("cctv-daemon is not running")
        return c.EXIT_NOT_RUNNING
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    how = "control socket"
    try:
        send_command(state_dir, "stop", timeout=max(0.1, min(args.timeout, STOP_ASK_S)), pid=owner.pid)
    except (ControlUnavailable, CommandFailed) as exc:
        if winapi.IS_WINDOWS:
            _err(f"cannot ask pid {owner.pid} to stop through the control socket: {exc}")
            return c.EXIT_RUNTIME
        try:  # POSIX fallback (socket gone, loop stuck): SIGTERM to the verified pid is the same graceful stop
            os.kill(owner.pid, signal.SIGTERM)
            how = "SIGTERM"
        except OSError as exc2:
            _err(f"cannot ask pid {owner.pid} to stop: {exc}; {exc2.strerror or exc2}")
            return c.EXIT_RUNTIME
    print(f"stopping cctv-daemon pid {owner.pid} ({how}); waiting up to {args.timeout:g} s...", flush=True)
    while not _gone(state_dir, owner):
        if time.monotonic() >= deadline:
            _err(f"pid {owner.pid} still running after {args.timeout:g} s")
            return c.EXIT_TIMEOUT
        time.sleep(0.1)
    print(f"stopped (after {time.monotonic() - t0:.1f} s)")
    return c.EXIT_OK


@command("reload", "make the running daemon re-read its config file (cameras applied without a restart)")
def cmd_reload(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return c.EXIT_USAGE  # the daemon would reject it too: say so here, with every error
    state_dir = config.storageConfig.state_dir
    owner = instance_lock.running_owner(state_dir)
    if owner is None:
        print("cctv-daemon is not running")
        return c.EXIT_NOT_RUNNING
    try:
        result = send_command(state_dir, "reload", timeout=RELOAD_ASK_S, pid=owner.pid)
    except (ControlUnavailable, CommandTimeout) as exc:
        if winapi.IS_WINDOWS or not hasattr(signal, "SIGHUP"):
            _err(f"cannot ask pid {owner.pid} to reload through the control socket: {exc}")
            return c.EXIT_RUNTIME
        try:  # POSIX fallback: SIGHUP is the same reload
            os.kill(owner.pid, signal.SIGHUP)
        except OSError as exc2:
            _err(f"cannot ask pid {owner.pid} to reload: {exc}; {exc2.strerror or exc2}")
            return c.EXIT_RUNTIME
        print(f"reload requested from pid {owner.pid} (SIGHUP); its log says what changed")
        return c.EXIT_OK
    except CommandFailed as exc:
        _err(f"pid {owner.pid} could not reload: {exc}")
        return c.EXIT_RUNTIME
    print(f"reload requested from pid {owner.pid}; its log says what changed")
    if isinstance(result, dict) and result.get("ok") is False:
        _err(f"the daemon rejected {args.config} ({result.get('errors')} error(s), listed in its log); "
             "it keeps the running config")
        return c.EXIT_USAGE
    if isinstance(result, dict):
        print(", ".join(f"{key}: {', '.join(result.get(key) or []) or '-'}"
                        for key in ("added", "removed", "changed", "needs_restart")))
    return c.EXIT_OK


# -- install-service -----------------------------------------------------------------------------------------
def _install_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--print", action="store_true", help="print the unit / task XML instead of installing it")
    p.add_argument("--user", default=None,
                   help=f"account to run as (Linux default: {c.SERVICE_USER}; Windows default: SYSTEM)")
    p.add_argument("--windows", action="store_true",
                   help="with --print: show the Windows task XML on any OS")


def unit_for(config: Config, config_path: Path, user: str) -> str:
    sc = config.storageConfig
    state = sc.state_dir.resolve()
    save = sc.savePath.resolve()
    extra: list[str] = []
    if config.logging.fileEnabled and config.logging.file is not None:
        extra.append(str(config.logging.file.resolve().parent))
    python = service_install.current_python()
    paths = [python, str(config_path), str(save), str(state), *extra]
    params = service_install.UnitParams(
        exec_start=service_install.exec_line(python, config_path),
        save_path=str(save),
        state_dir=None if state.is_relative_to(save) else str(state),
        user=user,
        webcam=any(cam.source == "webcam" and cam.enabled for cam in config.cameras),
        home_paths=any(p.startswith(("/home/", "/root/")) for p in paths),
        extra_paths=tuple(extra),
    )
    return service_install.render_unit(params)


def _run(cmd: list[str]) -> tuple[bool, str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return res.returncode == 0, (res.stderr or res.stdout).strip()


@command("install-service", "install and start the boot-time service (systemd unit or Windows task)",
         _install_args)
def cmd_install_service(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return c.EXIT_USAGE
    config_path = Path(args.config).resolve()
    if args.windows and not (winapi.IS_WINDOWS or args.print):
        _err("--windows installs nothing on this OS; use it with --print")
        return c.EXIT_USAGE
    if winapi.IS_WINDOWS or getattr(args, "windows", False):
        xml = service_install.render_task_xml(winapi.pythonw_path(service_install.current_python()),
                                              config_path, str(config_path.parent), args.user)
        if args.print:
            print(xml, end="")
            return c.EXIT_OK
        with tempfile.TemporaryDirectory() as tmp:
            xml_file = Path(tmp) / "cctv-daemon-task.xml"
            xml_file.write_text(xml, encoding="utf-16")
            res = winapi.schtasks_create(xml_file, c.SERVICE_NAME)
        if res.returncode != 0:
            _err(f"schtasks failed ({res.returncode}): {(res.stderr or res.stdout).strip()}")
            return c.EXIT_RUNTIME
        print(f"registered scheduled task {c.SERVICE_NAME!r}; "
              f"start it now with: schtasks /Run /TN {c.SERVICE_NAME}")
        return c.EXIT_OK
    user = args.user or c.SERVICE_USER
    unit = unit_for(config, config_path, user)
    problem = service_install.service_user_problem(
        user, [service_install.current_python(), "-m", "cctv_daemon", "--version"])
    if args.print:
        if problem is not None:
            _err(f"warning: {problem}")
        print(unit, end="")
        return c.EXIT_OK
    if problem is not None:
        _err(f"not installed: {problem}")
        return c.EXIT_RUNTIME
    target = Path("/etc/systemd/system") / f"{c.SERVICE_NAME}.service"
    try:
        target.write_text(unit, encoding="utf-8")
    except OSError as exc:
        _err(f"cannot write {target}: {exc.strerror or exc} (run as root, or use --print)")
        return c.EXIT_RUNTIME
    print(f"wrote {target}")
    for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", c.SERVICE_NAME]):
        ok, out = _run(cmd)
        if not ok:
            _err(f"`{' '.join(cmd)}` failed: {out or 'no output'}; the unit file is in place, fix and retry")
            return c.EXIT_RUNTIME
    print(f"enabled and started {c.SERVICE_NAME}.service; see `systemctl status {c.SERVICE_NAME}`")
    return c.EXIT_OK

