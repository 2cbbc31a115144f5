"""The command line: `cctv-daemon COMMAND [--config PATH]`. Exit codes are in core/constants.py and README.md."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence

from cctv_daemon import __version__
from cctv_daemon.catalog.errors import CatalogDamagedError, CatalogError
from cctv_daemon.cli import api, catalog, lost, run, service, uploads  # noqa: F401  (their commands register themselves)
from cctv_daemon.cli.common import COMMANDS
from cctv_daemon.core import constants as c
from cctv_daemon.core.log_setup import setup_logging
from cctv_daemon.core.redact import redact

ORDER = ("run", "check-config", "config-schema", "status", "stop", "reload", "segments", "export", "check",
         "install-service", "ui-url", "api-token")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cctv-daemon", description="Record cameras into catalogued MP4 segments.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    first = [n for n in ORDER if n in COMMANDS]
    for name in first + sorted(set(COMMANDS) - set(first)):
        help_text, _fn, arguments = COMMANDS[name]
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
    # Commands that print data print only data on stdout: whatever a command logs goes to stderr (warnings and
    # up; `run` then sends its own logs where its config says, stdout first).
    setup_logging("warning", stream=sys.stderr)
    try:
        code = fn(args)
        sys.stdout.flush()  # inside the try: a reader gone before the last buffered bytes is an EPIPE here
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, like any Unix filter
        _silence_stdout()
        return c.EXIT_BROKEN_PIPE
    except CatalogDamagedError as exc:  # a read command found a damaged catalog: it never repairs it itself
        print(f"cctv-daemon: {exc}", file=sys.stderr)
        return c.EXIT_RUNTIME
    except CatalogError as exc:  # catalog.url unusable, unreachable, or newer than this program
        print(f"cctv-daemon: {redact(str(exc))}", file=sys.stderr)
        return c.EXIT_USAGE


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def entry() -> int:
    """The process's entry point (`cctv-daemon`, `python -m cctv_daemon`): main(), one collection of what the command
    left (the daemon, its catalogs: their SQLite connections close and checkpoint as before), then gc.freeze()
    before the interpreter exits. Its exit otherwise runs the cyclic garbage collector again and again over every
    object SQLAlchemy, Alembic, FastAPI, pydantic... made at import: 0.3-0.6 s measured on 2 cores after `run` had
    stopped everything (and after each CLI command), with nothing left to do. Frozen objects are simply not
    collected; atexit handlers, log flushing and module teardown still run. Not in main(): tests call that in
    their own process."""
    code = main()
    gc.collect()  # what the command left behind is finalized now, as at exit (SQLite connections close: WAL checkpoint)
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(entry())
