"""What every command shares: the command registry and loading the config (and ffmpeg) with clear errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cctv_daemon.config.model import Config, ConfigError, load_config
from cctv_daemon.config.preflight import ffmpeg_problem, preflight
from cctv_daemon.core.redact import redact, register_secrets
from cctv_daemon.recording.ffmpeg_locate import FfmpegNotFound, find_ffmpeg

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
        report(exc)
        return None
    register_secrets(config.secrets())
    return config


def report(exc: ConfigError) -> None:
    print(f"cctv-daemon: invalid config {exc.source}:", file=sys.stderr)
    for err in exc.errors:
        print(f"  {redact(err)}", file=sys.stderr)


def load_with_ffmpeg(path: str, *, for_run: bool = False) -> tuple[Config, str] | None:
    """The config and the ffmpeg binary it names (or finds), or None after printing what is wrong.

    ``for_run``: also check everything `run` needs from the machine (folders, log file), before any lock."""
    config = load_or_report(path)
    if config is None:
        return None
    problem = ffmpeg_problem(config.ffmpegPath) if config.ffmpegPath else None
    errors = preflight(config) if for_run else [f"ffmpegPath: {problem}"] if problem else []
    if errors:
        report(ConfigError(errors, path))
        return None
    try:
        return config, find_ffmpeg(config.ffmpegPath)
    except FfmpegNotFound as exc:
        print(f"cctv-daemon: {exc}", file=sys.stderr)
        return None
