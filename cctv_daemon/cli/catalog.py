"""Commands over the catalog: `segments` (query footage and gaps), `check` (reconcile catalog and disk),
`export` (camera + time range → one MP4). Registered in cli.py by importing this module, which stays cheap: the
catalog (SQLAlchemy) is imported by the commands that open it, not by every `cctv-daemon` call."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cctv_daemon.catalog.rows import Gap, SegmentRow, with_gaps
from cctv_daemon.cli.common import command, load_or_report, load_with_ffmpeg
from cctv_daemon.core import constants as c
from cctv_daemon.segments import names as segment_names

if TYPE_CHECKING:
    from cctv_daemon.catalog.export_remote import RemoteFiles
    from cctv_daemon.catalog.store import Catalog
    from cctv_daemon.config.model import Config

JSON_VERSION = 1
CHECK_WAIT_S = 3600.0  # a rebuild of a very large catalog inside the daemon


def parse_time(text: str) -> float:
    """ISO 8601 (`2026-11-21T10:02`, `...Z`, `...+01:00`; naive = UTC) or a segment stamp
    (`20261121T100200Z`)."""
    t = text.strip()
    try:
        return segment_names.parse_stamp(t)
    except ValueError:
        pass
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601 (2026-11-21T10:02, ...Z, ...+01:00; naive = UTC) "
            "or YYYYMMDDTHHMMSSZ") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


_DAYS: dict[int, str] = {}


_ISO: dict[int, str] = {}


def iso(epoch: float) -> str:
    """UTC, milliseconds: 2026-11-21T10:02:00.000Z. Memoized: in a listing, one segment's end is the next
    one's start, and 100 000s of these are formatted."""
    ms = round(epoch * 1000)
    text = _ISO.get(ms)
    if text is None:
        day, ms_of_day = divmod(ms, 86_400_000)
        date = _DAYS.get(day)
        if date is None:
            date = _DAYS[day] = datetime.fromtimestamp(day * 86400, tz=timezone.utc).strftime("%Y-%m-%d")
        secs, milli = divmod(ms_of_day, 1000)
        h, rest = divmod(secs, 3600)
        m, s = divmod(rest, 60)
        text = _ISO[ms] = f"{date}T{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"
    return text


def _table_time(epoch: float) -> str:
    return iso(round(epoch))[:19]


def _open_catalog(config: Config, read_only: bool = True) -> Catalog:
    """Read commands open the catalog read-only and never create it (nor the state folder): run as root before the
    service's first start, they must not leave root-owned files that the service user then cannot use."""
    sc = config.storageConfig
    from cctv_daemon.catalog.store import Catalog, db_path
    from cctv_daemon.config.preflight import catalog_node_id

    return Catalog(db_path(sc.state_dir), sc.savePath, read_only=read_only, url=config.catalog.url,
                   node_id=catalog_node_id(config), prefix=config.catalog.tablePrefix)


def known_cameras(config: Config, catalog: Catalog) -> list[str]:
    """Every camera one may ask about: those of the config and those with footage in the catalog."""
    return sorted({cam.cameraName for cam in config.cameras} | set(catalog.newest_start()))


def unknown_camera_error(config: Config, catalog: Catalog, camera: str | None) -> str | None:
    """None when ``camera`` is None or known; else the message naming it and the known ones (callers print it
    to stderr and exit 2: a misspelt name must not look like "no footage")."""
    if camera is None:
        return None
    known = known_cameras(config, catalog)
    if camera in known:
        return None
    listed = ", ".join(known) if known else "none (no camera in the config, no footage in the catalog)"
    return f"unknown camera {camera!r}; known cameras (config and catalog): {listed}"


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


# -- segments -------------------------------------------------------------------------------------------
def _segments_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", help="only this camera")
    p.add_argument("--from", dest="start", type=parse_time, help="range start (ISO 8601 or stamp; UTC)")
    p.add_argument("--to", dest="end", type=parse_time, help="end of the range (ISO 8601 or stamp; UTC)")
    p.add_argument("--json", action="store_true", help="machine-readable output (see docs/cli.md)")


def segment_json(r: SegmentRow, overlaps_with: str | None = None) -> dict[str, object]:
    return {"camera": r.camera, "feedId": r.feed_id, "path": r.path, "start": iso(r.start), "end": iso(r.end),
            "startEpoch": r.start, "endEpoch": r.end, "duration": round(r.duration, 3),
            "mediaDuration": r.media_duration, "bytes": r.size,
            "upload": r.upload_state, "node": r.node_id, "overlapsWith": overlaps_with}


def gap_json(g: Gap) -> dict[str, object]:
    return {"camera": g.camera, "start": iso(g.start), "end": iso(g.end), "startEpoch": g.start,
            "endEpoch": g.end, "seconds": round(g.seconds, 3)}


@command("segments", "list catalogued segments and the gaps between them", _segments_args)
def cmd_segments(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return c.EXIT_USAGE
    catalog = _open_catalog(config)
    error = unknown_camera_error(config, catalog, args.camera)
    if error is not None:
        print(f"cctv-daemon: {error}", file=sys.stderr)
        return c.EXIT_USAGE
    rows = catalog.segments(camera=args.camera, start=args.start, end=args.end)
    gaps = with_gaps(rows, args.start, args.end)
    from cctv_daemon.catalog import overlaps

    doubles = overlaps.find(catalog, args.camera, args.start, args.end)  # a double recording after a partition
    other = {r: overlaps.other_node(r.camera, r.node_id, r.start, r.end, doubles) for r in rows} if doubles else {}
    uploads = catalog.has_uploads_table()
    if args.json:
        out = {"version": JSON_VERSION,
               "from": iso(args.start) if args.start is not None else None,
               "to": iso(args.end) if args.end is not None else None,
               "segments": [segment_json(r, other.get(r)) for r in rows], "gaps": [gap_json(g) for g in gaps],
               "totals": {"segments": len(rows), "bytes": sum(r.size for r in rows),
                          "seconds": round(sum(r.duration for r in rows), 3),
                          "gaps": len(gaps), "gapSeconds": round(sum(g.seconds for g in gaps), 3)}}
        sys.stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
        return c.EXIT_OK
    _print_table(rows, gaps, uploads, other)
    return c.EXIT_OK


def _print_table(rows: list[SegmentRow], gaps: list[Gap], uploads: bool,
                 other: dict[SegmentRow, str | None]) -> None:
    # rows and gaps are both ordered by (camera, start): merge them instead of sorting
    items: list[SegmentRow | Gap] = []
    gi = 0
    for r in rows:
        while gi < len(gaps) and (gaps[gi].camera, gaps[gi].start) <= (r.camera, r.start):
            items.append(gaps[gi])
            gi += 1
        items.append(r)
    items += gaps[gi:]
    head = f"{'CAMERA':<12} {'START (UTC)':<20} {'END (UTC)':<20} {'SECONDS':>8} {'SIZE':>9}"
    head += f" {'UPLOAD':<9}" if uploads else ""
    lines = [head + " PATH"]
    for item in items:
        if isinstance(item, Gap):
            lines.append(f"{item.camera:<12} {_table_time(item.start):<20} "
                         f"{_table_time(item.end):<20} {item.seconds:>8.1f}  -- GAP: no footage --")
            continue
        line = (f"{item.camera:<12} {_table_time(item.start):<20} {_table_time(item.end):<20} "
                f"{item.end - item.start:>8.1f} {item.size / 1e6:>6.1f} MB")
        if uploads:
            line += f" {item.upload_state or '-':<9}"
        also = other.get(item)
        lines.append(line + " " + item.path + (f"  (also recorded by node {also})" if also else ""))
    total = sum(r.size for r in rows)
    lines.append(f"{len(rows)} segment(s), {_human_size(total)}, {sum(r.duration for r in rows):.0f} s; "
                 f"{len(gaps)} gap(s), {sum(g.seconds for g in gaps):.0f} s missing")
    sys.stdout.write("\n".join(lines) + "\n")


# -- check ------------------------------------------------------------------------------------------------
def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repair", action="store_true", help="fix what is found (never touches files not ours)")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild the catalog's segment rows from the files alone, then check")
    p.add_argument("--json", action="store_true", help="machine-readable report")


@command("check", "reconcile the catalog with the files on disk (--repair to fix)", _check_args)
def cmd_check(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return c.EXIT_USAGE
    state_dir = config.storageConfig.state_dir
    if args.repair or args.rebuild:
        report = _repair(config, args)
        if report is None:
            return c.EXIT_RUNTIME
    else:  # read-only: nothing is written or created
        from cctv_daemon.catalog import check as catalog_check

        report = catalog_check.run_check(_open_catalog(config), state_dir, repair_found=False, rebuild=False,
                                         ffmpeg_exe=None)
    found, left = list(report["found"]), list(report["remaining"])
    if report.get("rebuilt") is not None:
        print(f"catalog rebuilt from files: {report['rebuilt']} segment(s)", file=sys.stderr)
    if args.json:
        out = {"version": JSON_VERSION, "found": found, "remaining": left, "repaired": bool(args.repair)}
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
    else:
        for p in found:
            print(f"{p['kind']:<20} {p['path']}  ({p['detail']})")
        if not found:
            print("catalog and disk agree: no problems")
        elif args.repair:
            print(f"{len(found)} problem(s) found, {len(found) - len(left)} repaired, {len(left)} remaining")
        else:
            print(f"{len(found)} problem(s) found (run with --repair to fix)")
    return c.EXIT_CHECK_PROBLEMS if left else c.EXIT_OK


def _repair(config: Config, args: argparse.Namespace) -> dict[str, Any] | None:
    """Repairs run inside the daemon (its "check" command) when one runs, else here under the instance lock, so
    that a daemon cannot start in the middle of them."""
    from cctv_daemon.catalog import check as catalog_check
    from cctv_daemon.service import instance_lock
    from cctv_daemon.service.control import send_command

    state_dir = config.storageConfig.state_dir
    want = {"repair": bool(args.repair), "rebuild": bool(args.rebuild)}
    owner = instance_lock.running_owner(state_dir)
    if owner is not None:
        try:
            job = send_command(state_dir, "check", want, timeout=10, pid=owner.pid)["job"]
            deadline = time.monotonic() + CHECK_WAIT_S
            while time.monotonic() < deadline:
                state = send_command(state_dir, "check_result", {"job": job}, timeout=10, pid=owner.pid)
                if state.get("done"):
                    if "error" in state:
                        print(f"cctv-daemon: check failed in the daemon: {state['error']}", file=sys.stderr)
                        return None
                    print(f"repairs done by the running daemon (pid {owner.pid})", file=sys.stderr)
                    return dict(state["report"])
                time.sleep(0.2)
            print(f"cctv-daemon: the daemon's check did not finish within {CHECK_WAIT_S:.0f} s", file=sys.stderr)
        except Exception as exc:
            print(f"cctv-daemon: the running daemon (pid {owner.pid}) did not take the repair: {exc}; "
                  "nothing was changed", file=sys.stderr)
        return None
    lock = instance_lock.InstanceLock(state_dir)
    try:
        lock.acquire(config.storageConfig.savePath)
    except instance_lock.AlreadyRunning as exc:
        print(f"cctv-daemon: a daemon started meanwhile ({exc}); run the repair again", file=sys.stderr)
        return None
    try:
        ffmpeg_exe: str | None
        try:
            from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg

            ffmpeg_exe = find_ffmpeg(config.ffmpegPath)
        except Exception:
            ffmpeg_exe = None
        catalog = _open_catalog(config, read_only=False)
        try:
            return catalog_check.run_check(catalog, state_dir, repair_found=bool(args.repair),
                                           rebuild=bool(args.rebuild), ffmpeg_exe=ffmpeg_exe)
        finally:
            catalog.close()
    finally:
        lock.release()


# -- export -----------------------------------------------------------------------------------------------
def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", required=True)
    p.add_argument("--from", dest="start", type=parse_time, required=True)
    p.add_argument("--to", dest="end", type=parse_time, required=True)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--force", action="store_true", help="overwrite the output file")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the result (clip times, SHA-256, gaps) as JSON")


def _known_cameras(config: Config, catalog: Catalog) -> list[str]:
    names = {cam.cameraName for cam in config.cameras}
    names.update(catalog.cameras())
    return sorted(names)


@command("export", "one camera and a time range → one MP4 (no re-encode)", _export_args)
def cmd_export(args: argparse.Namespace) -> int:
    """stdout: only the result (`SHA256  FILE`, as sha256sum prints it, or the JSON); the rest on stderr."""
    loaded = load_with_ffmpeg(args.config)
    if loaded is None:
        return c.EXIT_USAGE
    config, ffmpeg_exe = loaded
    if args.end <= args.start:  # bad usage whatever the catalog holds (or when there is none yet)
        print("cctv-daemon: the end of the range must be after its start", file=sys.stderr)
        return c.EXIT_USAGE
    import structlog

    if not structlog.is_configured():  # stdout is for the result only: any log line goes to stderr
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    sc = config.storageConfig
    # nothing recorded yet: do not create a catalog just to say so
    if not config.catalog.url and not (sc.state_dir / c.CATALOG_FILENAME).exists():
        known = sorted(cam.cameraName for cam in config.cameras)
        if args.camera in known:
            print(f"cctv-daemon: no footage of camera {args.camera!r} (no catalog in {sc.state_dir})",
                  file=sys.stderr)
            return c.EXIT_RUNTIME
        print(f"cctv-daemon: unknown camera {args.camera!r}; known cameras: {', '.join(known) or '(none)'}",
              file=sys.stderr)
        return c.EXIT_USAGE
    catalog = _open_catalog(config)
    known = _known_cameras(config, catalog)
    if args.camera not in known:
        print(f"cctv-daemon: unknown camera {args.camera!r}; known cameras: "
              f"{', '.join(known) if known else '(none: no camera in the config or the catalog)'}",
              file=sys.stderr)
        return c.EXIT_USAGE
    from cctv_daemon.catalog.export_remote import RemoteFiles
    from cctv_daemon.upload.s3_client import downloader

    # another node's uploaded footage is fetched next to the output (removed when done, also on errors and ^C)
    parent = args.output.resolve().parent
    with RemoteFiles(downloader(config.s3Config, config.awsCredentials),
                     parent if parent.is_dir() else None) as remote:
        return _export(args, catalog, ffmpeg_exe, remote)


def _export(args: argparse.Namespace, catalog: Catalog, ffmpeg_exe: str, remote: RemoteFiles) -> int:
    from cctv_daemon.catalog import export

    try:
        plan = export.plan(catalog, args.camera, args.start, args.end, remote)
    except export.ExportError as exc:
        print(f"cctv-daemon: {exc}", file=sys.stderr)
        return c.EXIT_USAGE if "must be after" in str(exc) else c.EXIT_RUNTIME
    for path, why in plan.skipped:
        print(f"skipped unreadable segment {path}: {why}", file=sys.stderr)
    for g in plan.gaps:
        print(f"gap: {iso(g.start)} → {iso(g.end)} ({g.seconds:.1f} s without footage)", file=sys.stderr)
    show = not args.quiet and plan.duration >= 60
    last = [-1]

    def progress(done: float, total: float) -> None:
        pct = int(100 * min(1.0, done / total)) if total > 0 else 100
        if pct != last[0]:
            last[0] = pct
            sys.stderr.write(f"\rexporting {args.camera}: {pct:3d}% ({done:.0f}/{total:.0f} s)")
            sys.stderr.flush()

    try:
        result = export.export(ffmpeg_exe, plan, args.output, progress if show else None, overwrite=args.force)
    except export.ExportError as exc:
        if show:
            sys.stderr.write("\n")
        print(f"cctv-daemon: {exc}", file=sys.stderr)
        return c.EXIT_RUNTIME
    if show:
        sys.stderr.write("\n")
    print(f"{args.output}: {iso(result.clip_start)} → {iso(result.clip_end)}, {result.seconds:.1f} s from "
          f"{len(plan.segments)} segment(s), {len(plan.gaps)} gap(s)", file=sys.stderr)
    if args.json:
        out = {"version": JSON_VERSION, "camera": args.camera, "output": str(args.output),
               "sha256": result.sha256, "bytes": result.size,
               "requested": {"from": iso(args.start), "to": iso(args.end)},
               "clip": {"from": iso(result.clip_start), "to": iso(result.clip_end),
                        "seconds": round(result.seconds, 3)},
               "segments": len(plan.segments), "joinedBy": result.joined_by,
               "gaps": [gap_json(g) for g in plan.gaps],
               "skipped": [{"path": str(path), "reason": why} for path, why in plan.skipped]}
        sys.stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
    else:
        sys.stdout.write(f"{result.sha256}  {args.output}\n")
    return c.EXIT_OK
