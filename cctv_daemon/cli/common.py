"""What every command shares: the command registry and loading the config (and ffmpeg) with clear errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from cctv_daemon.config.model import Config, ConfigError, load_config
from cctv_daemon.config.preflight import ffmpeg_problem, preflight
from cctv_daemon.core.redact import redact, register_secrets

if TYPE_CHECKING:
    from cctv_daemon.recording.ffmpeg_caps import FfmpegChoice

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
    """The config and the ffmpeg binary to use, or None after printing what is wrong (see load_with_choice);
    when the ffmpeg on PATH was passed over, says why on stderr."""
    loaded = load_with_choice(path, for_run=for_run)
    if loaded is None:
        return None
    config, choice = loaded
    if choice.why:
        print(f"cctv-daemon: warning: {choice.why}", file=sys.stderr)
    return config, choice.exe


def load_with_choice(path: str, *, for_run: bool = False) -> tuple[Config, FfmpegChoice] | None:
    """The config and the ffmpeg it names (or finds) that can do the job, or None after printing what is wrong.

    ``for_run``: also check everything `run` needs from the machine (folders, log file), before any lock."""
    config = load_or_report(path)
    if config is None:
        return None
    problem = ffmpeg_problem(config.ffmpegPath) if config.ffmpegPath else None
    errors = preflight(config) if for_run else [f"ffmpegPath: {problem}"] if problem else []
    if errors:
        report(ConfigError(errors, path))
        return None
    from cctv_daemon.recording.ffmpeg_caps import FfmpegUnusable, choose_ffmpeg  # ffmpeg-python: only here

    try:
        return config, choose_ffmpeg(config)
    except FfmpegUnusable as exc:
        if exc.key:
            report(ConfigError([f"{exc.key}: {exc}"], path))
        else:
            print(f"cctv-daemon: no usable ffmpeg: {exc} (set ffmpegPath to an ffmpeg >= 5.0)", file=sys.stderr)
        return None
