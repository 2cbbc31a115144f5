"""`ui-url` (a one-time sign-in link for the page) and `api-token` (a token for scripts): both read
{stateDir}/api-tokens.json (0600) and {stateDir}/api.json written by the running daemon."""

from __future__ import annotations

import argparse
import sys

from cctv_daemon.api import auth
from cctv_daemon.cli.common import command
from cctv_daemon.cli.service import state_dir_for
from cctv_daemon.core import constants as c


def _role_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--viewer", action="store_true", help="viewer rights only (status, live, play, export)")


@command("ui-url", "print a one-time sign-in link to the daemon's web page (valid 10 minutes)", _role_args)
def cmd_ui_url(args: argparse.Namespace) -> int:
    dirs = state_dir_for(args.config)
    if dirs is None:
        return c.EXIT_USAGE
    _save, state_dir = dirs
    from cctv_daemon.api.server import read_info

    info = read_info(state_dir)
    if info is None or not isinstance(info.get("url"), str):
        print("cctv-daemon: the HTTP API is not running (is the daemon running with api.enabled?)", file=sys.stderr)
        return c.EXIT_NOT_RUNNING
    try:
        tokens = auth.read(state_dir)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cctv-daemon: cannot read the API tokens: {exc}", file=sys.stderr)
        return c.EXIT_NOT_RUNNING
    code = auth.signin_code(tokens, "viewer" if args.viewer else "admin")
    print(f"{info['url']}/api/signin?code={code}")
    return c.EXIT_OK


@command("api-token", "print the API token (admin, or --viewer) for scripts: Authorization: Bearer TOKEN",
         _role_args)
def cmd_api_token(args: argparse.Namespace) -> int:
    dirs = state_dir_for(args.config)
    if dirs is None:
        return c.EXIT_USAGE
    try:
        tokens = auth.read(dirs[1])
    except (OSError, ValueError, KeyError):
        print("cctv-daemon: no API tokens yet (they are made when the daemon first starts)", file=sys.stderr)
        return c.EXIT_NOT_RUNNING
    print(tokens.viewer if args.viewer else tokens.admin)
    return c.EXIT_OK
