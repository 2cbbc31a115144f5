"""`run` (record in the foreground) and `check-config`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cctv_daemon.cli import service as cli_service
from cctv_daemon.cli.common import command, load_with_choice, report
from cctv_daemon.config.disk_floor import floor_problems
from cctv_daemon.config.model import ConfigError, json_schema
from cctv_daemon.core import constants as c
from cctv_daemon.core.log_setup import setup_logging

if TYPE_CHECKING:
    from cctv_daemon.catalog.store import Catalog
    from cctv_daemon.recording.ffmpeg_caps import FfmpegChoice

CLOSE_WAIT_S = 2.0


@command("check-config", "validate the config file and everything `run` needs (folders, log file, ffmpeg)")
def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = load_with_choice(args.config, for_run=True)
    if loaded is None:
        return c.EXIT_USAGE
    config, choice = loaded
    if choice.why:
        print(f"cctv-daemon: warning: {choice.why}", file=sys.stderr)
    if problem := floor_problems(config)[1]:  # `run` records anyway; retention deletes nothing for this floor
        report(ConfigError([problem], args.config))
        return c.EXIT_USAGE
    if config.catalog.url:  # reachable, and a schema this program knows (nothing is written)
        from cctv_daemon.catalog.migrate import probe

        probe(config.catalog.url, config.catalog.tablePrefix)  # CatalogError: reported by cli/main.py, exit 2
    enabled = [cam.cameraName for cam in config.cameras if cam.enabled]
    print(f"{args.config}: OK ({len(enabled)} camera(s) enabled: {', '.join(enabled) or 'none'}; "
          f"ffmpeg: {choice.exe}, version {choice.capabilities.version})")
    return c.EXIT_OK


def log_ffmpeg_choice(choice: FfmpegChoice) -> None:
    import structlog

    log = structlog.get_logger("cctv_daemon.ffmpeg")
    if choice.why:
        log.warning("ffmpeg_fallback", ffmpeg=choice.exe, version=choice.capabilities.version, reason=choice.why)
    else:
        log.info("ffmpeg_chosen", ffmpeg=choice.exe, version=choice.capabilities.version)


@command("config-schema", "print the JSON Schema of config.json (editors validate with it)")
def cmd_config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))  # `| head`: a reader gone early is handled in cli/main.py
    return c.EXIT_OK


@command("run", "record in the foreground (what services start)")
def cmd_run(args: argparse.Namespace) -> int:
    loaded = load_with_choice(args.config, for_run=True)  # folders and log file checked before the lock
    if loaded is None:
        return c.EXIT_USAGE
    config, choice = loaded
    ffmpeg_exe = choice.exe
    lock = cli_service.acquire_or_report(config)  # single instance: before anything touches the folder
    if isinstance(lock, int):
        return lock
    lc = config.logging
    log_file = None
    if lc.fileEnabled:
        log_file = lc.file or config.storageConfig.state_dir / c.LOG_DIRNAME / c.LOG_FILENAME
    try:
        setup_logging(lc.level, log_file, lc.maxBytes, lc.backupCount)
    except OSError as exc:
        print(f"cctv-daemon: cannot open log file {log_file}: {exc.strerror}", file=sys.stderr)
        lock.release()
        return c.EXIT_RUNTIME
    from cctv_daemon.config.secret_file_check import warn_if_secrets_readable
    from cctv_daemon.service.root import build_daemon

    warn_if_secrets_readable(config, Path(args.config))
    log_ffmpeg_choice(choice)
    daemon = build_daemon(config, ffmpeg_exe)  # the one place the daemon is assembled
    daemon.install_signal_handlers()
    try:
        return daemon.run()
    finally:
        close_catalog(daemon.storage.catalog)
        lock.release()


def close_catalog(catalog: Catalog) -> None:
    """Close the daemon's catalog once it has stopped, before the lock goes: the last connection to a SQLite
    catalog checkpoints its WAL (no -wal file is left beside it). Not if a straggling thread still holds it."""
    if catalog.db.lock.acquire(timeout=CLOSE_WAIT_S):
        try:
            catalog.close()
        finally:
            catalog.db.lock.release()
