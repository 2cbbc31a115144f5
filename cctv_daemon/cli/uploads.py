"""`cctv-daemon uploads list|retry`: the upload queue of the catalog. `retry` re-queues uploads that were given up
(state `failed`, after s3Config.maxAttempts failures) or blocked by a store error; it works whether or not the
daemon runs (one transaction on the catalog, under SQLite's busy timeout; a running daemon picks the rows up
within a second). Registered in cli/main.py by importing this module (cheap: the catalog is imported by the
command itself)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from cctv_daemon.cli.common import command, load_or_report
from cctv_daemon.core import constants as c
from cctv_daemon.core.redact import redact
from cctv_daemon.upload import states

if TYPE_CHECKING:
    from cctv_daemon.upload import queue as q


def _err(msg: str) -> None:
    print(f"cctv-daemon: {msg}", file=sys.stderr)


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    retry = sub.add_parser("retry", help="re-queue a failed upload (KEY: its S3 key or path) or all of them",
                           description="re-queue a failed upload (KEY: its S3 key or its path under savePath), "
                                       "or every failed upload with --all; prints the S3 keys re-queued")
    retry.add_argument("key", nargs="?", metavar="KEY")
    retry.add_argument("--all", action="store_true", help="every upload in state failed")
    retry.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    ls = sub.add_parser("list", help="list uploads (default: the failed ones)",
                        description="list uploads in a state (default: failed = given up after "
                                    "s3Config.maxAttempts failures; retrying = waiting for another automatic "
                                    "attempt after a failed one, or for the store), oldest first")
    ls.add_argument("--state", default=states.FAILED, choices=states.SHOWN_STATES)
    ls.add_argument("--json", action="store_true", help="one JSON document")
    ls.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _open_queue(args: argparse.Namespace) -> tuple[q.UploadQueue, int] | int:
    """(the queue, s3Config.maxAttempts), or an exit code."""
    config = load_or_report(args.config)
    if config is None:
        return c.EXIT_USAGE
    if config.s3Config is None:
        _err(f"{args.config} has no s3Config: nothing is uploaded")
        return c.EXIT_USAGE
    db = config.storageConfig.state_dir / c.CATALOG_FILENAME
    if not config.catalog.url and not db.exists():
        _err(f"no catalog at {db}: the daemon has not run with this config yet, nothing to retry")
        return c.EXIT_USAGE
    from sqlalchemy.exc import SQLAlchemyError

    from cctv_daemon.catalog.engine import error_text
    from cctv_daemon.catalog.store import Catalog
    from cctv_daemon.config.preflight import catalog_node_id
    from cctv_daemon.upload import queue as q

    try:  # `list` reads: it never writes, never migrates, never moves a damaged catalog aside (read commands)
        catalog = Catalog(db, config.storageConfig.savePath, url=config.catalog.url, read_only=args.action == "list",
                          node_id=catalog_node_id(config), prefix=config.catalog.tablePrefix)
    except (sqlite3.Error, SQLAlchemyError) as exc:
        _err(f"cannot open the catalog {db}: {error_text(exc)}")
        return c.EXIT_RUNTIME
    return q.UploadQueue(catalog.db), config.s3Config.maxAttempts


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@command("uploads", "the upload queue: `uploads list` (failed ones), `uploads retry KEY|--all`", _args)
def cmd_uploads(args: argparse.Namespace) -> int:
    if args.action is None:
        _err("uploads needs an action: `uploads list` or `uploads retry KEY|--all`")
        return c.EXIT_USAGE
    if args.action == "retry" and bool(args.key) == bool(args.all):
        _err("uploads retry needs either a KEY (S3 key or path) or --all, not both")
        return c.EXIT_USAGE
    opened = _open_queue(args)
    if isinstance(opened, int):
        return opened
    queue, max_attempts = opened
    from sqlalchemy.exc import SQLAlchemyError

    from cctv_daemon.catalog.engine import error_text
    try:
        if args.action == "list":
            return _list(queue, args.state, args.json, max_attempts)
        return _retry(queue, None if args.all else args.key)
    except (sqlite3.Error, SQLAlchemyError) as exc:
        _err(f"catalog {queue.db_path}: {error_text(exc, queue.db.url)} (retry in a moment)")
        return c.EXIT_RUNTIME
    finally:
        queue.close()


def _list(queue: q.UploadQueue, state: str, as_json: bool, max_attempts: int) -> int:
    """What `status` calls failed (failed_count) is what this calls failed: given up after max_attempts."""
    rows = queue.shown(state, max_attempts)
    if as_json:
        out = [{"key": r.s3_key, "path": r.path, "camera": r.camera, "start": r.start, "size": r.size,
                "state": state, "attempts": r.attempts, "failures": r.failures,
                "next_attempt_at": r.next_attempt_at if state == states.RETRYING else None,
                "last_error": redact(r.last_error) if r.last_error else None} for r in rows]
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
        return c.EXIT_OK
    for r in rows:
        error = redact(r.last_error) if r.last_error else "-"
        print(f"{r.s3_key}\t{r.camera}\t{_when(r.start)}\t{r.size}\tfailures={r.failures}\t{error}")
    summary = f"{len(rows)} upload(s) {state}"
    summary += f" (given up after s3Config.maxAttempts={max_attempts} failures)" if state == states.FAILED else ""
    if state == states.FAILED and (retrying := len(queue.shown(states.RETRYING, max_attempts))):
        summary += f"; {retrying} more retrying automatically (`uploads list --state retrying`)"
    print(summary, file=sys.stderr)
    return c.EXIT_OK


def _retry(queue: q.UploadQueue, key: str | None) -> int:
    try:
        rows = queue.retry(key)
    except KeyError:
        _err(f"unknown upload {key!r}: give the S3 key or the path under savePath "
             "(see `cctv-daemon uploads list`)")
        return c.EXIT_USAGE
    except ValueError as exc:
        _err(f"cannot retry: {exc}")
        return c.EXIT_USAGE
    for r in rows:
        print(r.s3_key)
    if not rows:
        print("no failed uploads: nothing re-queued", file=sys.stderr)
    else:
        print(f"re-queued {len(rows)} upload(s); a running daemon takes them within a second", file=sys.stderr)
    return c.EXIT_OK


