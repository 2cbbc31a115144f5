"""The command line: `cctv-daemon COMMAND [--config PATH]`. Exit codes are in constants.py and README.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cctv_daemon import __version__
from cctv_daemon import constants as c
from cctv_daemon.config import Config, ConfigError, load_config
from cctv_daemon.ffmpeg_locate import FfmpegNotFound, find_ffmpeg
from cctv_daemon.log_setup import setup_logging
from cctv_daemon.redact import register_secrets

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Command, Callable[[argparse.ArgumentParser], None] | None]] = {}


def command(
    name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = (help_text, fn, arguments)
        return fn

    return register


def load_or_report(path: str) -> Config | None:
    """Load the config, or print every error of it to stderr (no traceback) and return None."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"cctv-daemon: invalid config {exc.source}:", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        return None
    register_secrets(config.secrets())
    return config


def load_with_ffmpeg(path: str) -> tuple[Config, str] | None:
    """The config and the ffmpeg binary it names (or finds), or None after printing what is wrong."""
    config = load_or_report(path)
    if config is None:
        return None
    try:
        return config, find_ffmpeg(config.ffmpegPath)
    except FfmpegNotFound as exc:
        print(f"cctv-daemon: {exc}", file=sys.stderr)
        return None


@command("check-config", "validate the config file and report every error in it")
def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = load_with_ffmpeg(args.config)
    if loaded is None:
        return c.EXIT_USAGE
    config, ffmpeg_exe = loaded
    enabled = [cam.cameraName for cam in config.cameras if cam.enabled]
    print(f"{args.config}: OK ({len(enabled)} camera(s) enabled: {', '.join(enabled) or 'none'}; "
          f"ffmpeg: {ffmpeg_exe})")
    return c.EXIT_OK


@command("run", "record in the foreground (what services start)")
def cmd_run(args: argparse.Namespace) -> int:
    loaded = load_with_ffmpeg(args.config)
    if loaded is None:
        return c.EXIT_USAGE
    config, ffmpeg_exe = loaded
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
    from cctv_daemon.secret_file_check import warn_if_secrets_readable
    from cctv_daemon.supervisor import Daemon
    from cctv_daemon.uploader import attach_uploader

    warn_if_secrets_readable(config, Path(args.config))
    daemon = Daemon(config, ffmpeg_exe)
    cli_service.attach(daemon)
    attach_uploader(daemon)  # only when config.s3Config is set
    daemon.install_signal_handlers()
    try:
        return daemon.run()
    finally:
        lock.release()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cctv-daemon", description="Record cameras into catalogued MP4 segments.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _fn, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default="config.json", help="config file (default: ./config.json)")
        if arguments is not None:
            arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return c.EXIT_USAGE
    _help, fn, _arguments = COMMANDS[args.command]
    try:
        return fn(args)
    except KeyboardInterrupt:
        return 130


from cctv_daemon import cli_catalog, cli_service  # noqa: E402, F401  (their commands register themselves)

if __name__ == "__main__":
    sys.exit(main())
