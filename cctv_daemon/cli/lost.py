"""`cctv-daemon ack-lost`: footage deleted before its upload was verified (the free-space floor forced it, or
`retentionStrict`) is listed by `status` until someone says they have seen it. The deletions stay in the catalog
(state `deleted`, reason ending "(not uploaded)") and in the error log; only the listing ends. Through the running
daemon's command path when it runs, else by writing `{stateDir}/lost-ack.json` (what the daemon reads at start)."""

from __future__ import annotations

import argparse
import sys
import time

from cctv_daemon.cli.common import command, load_or_report
from cctv_daemon.core import constants as c
from cctv_daemon.service import instance_lock


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print what was acknowledged as JSON")


@command("ack-lost", "acknowledge the footage lost so far (deleted before upload): `status` stops listing it",
         _args)
def cmd_ack_lost(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return c.EXIT_USAGE
    state_dir = config.storageConfig.state_dir
    if not (state_dir / c.CATALOG_FILENAME).exists():
        print("nothing recorded yet: no footage lost", file=sys.stderr)
        return c.EXIT_OK
    owner = instance_lock.running_owner(state_dir)
    if owner is not None:
        from cctv_daemon.service.control import send_command

        try:
            seen = send_command(state_dir, "ack_lost", timeout=10, pid=owner.pid)
        except Exception as exc:
            print(f"cctv-daemon: the running daemon (pid {owner.pid}) did not take it: {exc}", file=sys.stderr)
            return c.EXIT_RUNTIME
        if args.json:
            import json

            print(json.dumps(seen))
        else:
            print(f"acknowledged {seen['count']} lost segment(s) ({seen['bytes']} bytes)")
        return c.EXIT_OK
    from cctv_daemon.catalog.retention import write_ack

    try:
        write_ack(state_dir / c.LOST_ACK_FILENAME, time.time())
    except OSError as exc:
        print(f"cctv-daemon: cannot write {state_dir / c.LOST_ACK_FILENAME}: {exc.strerror or exc}", file=sys.stderr)
        return c.EXIT_RUNTIME
    print("acknowledged the footage lost so far (the daemon is not running)")
    return c.EXIT_OK
