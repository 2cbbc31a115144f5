"""status.json: the daemon's published snapshot (service/snapshot.py) written atomically at once when a camera's state
or the daemon's phase changes and otherwise every STATUS_PERIOD_S (5 s; readers call it stale after 15 s), read by
`cctv-daemon status` when the control socket does not answer (another user, a stuck loop). Schema: docs/cli.md."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from cctv_daemon.core import constants as c
from cctv_daemon.core.clock import Clock
from cctv_daemon.service.snapshot import Snapshot, component_name

__all__ = ["StatusWriter", "component_name", "format_human", "read_status", "status_path", "write_atomic"]

log = structlog.get_logger("cctv_daemon.status")


def status_path(state_dir: Path) -> Path:
    return state_dir / c.STATUS_FILENAME


def write_atomic(path: Path, data: dict[str, Any] | str) -> None:
    """`data` as JSON (or JSON text already) + a newline in a temporary file, renamed over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # No indent: json's C encoder only runs without one; indented, the pure-Python encoder made this file's writes
    # the main loop's largest cost (docs/benchmarks.md). `status --json` prints it indented.
    text = ((data if isinstance(data, str) else _dumps(data)) + "\n").encode("utf-8")
    # One descriptor, no file object (a text wrapper, its buffer and encoder, a path lookup for chmod): status.json
    # is written every 5 s from the main loop.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0),
                 0o644)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o644)  # readable by other users whatever the umask: `status` from anyone's terminal
        view = memoryview(text)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)


class StatusWriter:
    """Daemon component: writes the published snapshot to status.json every STATUS_PERIOD_S (not on every tick),
    at once when a camera's state or reason or the daemon's phase changed, and when asked (start, stopping,
    stopped). Counters and disk figures alone (a new segment) wait for the period."""

    name = "status_file"
    starts_early = True  # before the startup recovery (Daemon.start_early)

    def __init__(self, state_dir: Path, snapshot: Callable[[], Snapshot], clock: Clock) -> None:
        self.path = status_path(state_dir)
        self.snapshot = snapshot
        self.clock = clock
        self._next = 0.0
        self._written: tuple[object, ...] = ()
        self.writes = 0
        self._failing = False

    def start(self) -> None:
        self.write()

    def next_due(self) -> float:
        """The next periodic write (monotonic): the daemon's loop wakes for it, however long its idle tick."""
        return self._next

    def tick(self) -> None:
        if self.clock.monotonic() >= self._next or _states(self.snapshot()) != self._written:
            self.write()

    def write(self) -> None:
        self._next = self.clock.monotonic() + c.STATUS_PERIOD_S
        snap = self.snapshot()
        self._written = _states(snap)
        try:
            write_atomic(self.path, snap.to_json())
            self.writes += 1
            self._failing = False
        except OSError as exc:
            if not self._failing:
                log.warning("status_not_written", path=str(self.path), error=str(exc))
            self._failing = True

    def stop(self) -> None:
        self.write()


def _states(snap: Snapshot) -> tuple[object, ...]:
    return snap.phase, tuple((name, cam.state, cam.reason) for name, cam in snap.cameras.items())


# -- reading (the `status` command) ------------------------------------------------------------------------
def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(status_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _when(epoch: Any, now: float) -> str:
    if not isinstance(epoch, (int, float)):
        return "-"
    ts = datetime.fromtimestamp(epoch, timezone.utc).astimezone()
    return f"{ts:%Y-%m-%d %H:%M:%S} ({_ago(now - epoch)} ago)"


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def _gb(n: Any) -> str:
    return f"{n / 1e9:.1f} GB" if isinstance(n, (int, float)) else "?"


def format_human(data: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [f"cctv-daemon running: pid {data.get('pid')}, up since {_when(data.get('started_at'), now)}",
             f"  config: {data.get('config')}   recordings: {data.get('save_path')}", ""]
    rows = [("CAMERA", "STATE", "SINCE", "LAST SEGMENT", "SEGMENTS", "RECONNECTS", "STALLS", "LAST ERROR")]
    for name, cam in sorted(data.get("cameras", {}).items()):
        rows.append((name, str(cam.get("state")), _when(cam.get("since"), now),
                     _when(cam.get("last_segment_at"), now), str(cam.get("segments", 0)),
                     str(cam.get("reconnects", 0)), str(cam.get("stalls", 0)), cam.get("last_error") or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])
    if len(rows) == 1:
        lines.append("(no cameras)")
    for name, cam in sorted(data.get("cameras", {}).items()):
        lease = cam.get("lease")
        if isinstance(lease, dict) and not lease.get("mine"):
            lines.append(f"  {name}: {lease.get('state')}: {lease.get('reason')}")
        until = cam.get("record_until")
        if isinstance(until, (int, float)):
            label = f" [{cam['record_label']}]" if cam.get("record_label") else ""
            lines.append(f"  {name}: recording on request{label}, {_ago(until - now)}"
                         " left")
    d = data.get("disk", {})
    limits = [f"min free {d.get('min_free_gb')} GB"]
    if d.get("cap_gb"):
        limits.append(f"cap {d['cap_gb']} GB")
    if d.get("retention_days"):
        limits.append(f"retention {d['retention_days']} days")
    lines += ["", f"disk {d.get('path')}: {_gb(d.get('used_bytes'))} used of {_gb(d.get('total_bytes'))}, "
                  f"{_gb(d.get('free_bytes'))} free ({', '.join(limits)})"
                  + ("  LOW SPACE" if d.get("low_space") else "")]
    for name, comp in sorted(data.get("components", {}).items()):
        render = _RENDER.get(name)
        if render is not None and isinstance(comp, dict):
            lines.append(render(comp, now))
        else:
            items = comp.items() if isinstance(comp, dict) else []
            text = ", ".join(f"{k}={v}" for k, v in items if v not in (None, [], {})) if items else str(comp)
            if text:
                lines.append(f"{name}: {text}")
    return "\n".join(lines)


def _size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _retention_line(r: dict[str, Any], now: float) -> str:
    cap = f" of cap {_size(r['limitBytes'])}" if r.get("limitBytes") else ""
    text = f"footage: {_size(r.get('bytes'))}{cap} in {r.get('segments', 0)} segments"
    text += f"; deleted {r.get('deleted', 0)} ({_size(r.get('deletedBytes', 0))})"
    if r.get("unuploadedDeleted"):
        text += f", {r['unuploadedDeleted']} of them NOT UPLOADED"
    lost = r.get("lost") or {}
    if lost.get("count"):
        oldest = lost.get("oldest")
        since = time.strftime(", oldest from %Y-%m-%d %H:%M", time.localtime(oldest)) if oldest else ""
        text += (f"; FOOTAGE LOST: {lost['count']} segment(s) ({_size(lost.get('bytes', 0))}{since}) deleted before"
                 " their upload (`cctv-daemon ack-lost` once seen)")
    text += "; SHORT OF SPACE" if r.get("shortOfSpace") else ""
    for warning in r.get("warnings") or ():  # why: over a cap with footage not uploaded, an unreachable floor
        if not (lost.get("count") and "deleted before upload" in str(warning)):  # FOOTAGE LOST said it already
            text += f"\n  warning: {warning}"
    return text


def _uploader_line(u: dict[str, Any], now: float) -> str:
    age = u.get("oldest_pending_age_s")
    text = f"uploads: {u.get('state')}, queue {u.get('queue_length', 0)}"
    if age is not None:
        text += f" (oldest waiting {_ago(float(age))})"
    text += f", done {u.get('uploads_done', 0)} ({_size(u.get('bytes_uploaded', 0))})"
    if u.get("last_error"):
        text += f", last error: {u['last_error']}"
        text += f" at {_when(u['last_error_at'], now)}" if u.get("last_error_at") is not None else ""
    elif u.get("recovered_error"):  # an error an upload has since succeeded after: history, not the present
        text += f", recovered {_ago(now - float(u.get('recovered_at') or now))} ago from: {u['recovered_error']}"
    if u.get("threads_failing"):
        text += f"\n  uploader FAILING ({u.get('worker_errors')} errors): {u.get('worker_last_error')}"
    if u.get("failed_count"):
        oldest = _when(u.get("failed_oldest_start"), now)
        text += (f"\n  FAILED uploads (kept on disk): {u['failed_count']}, oldest {oldest}"
                 f" {u.get('failed_oldest_path')}, last error: {u.get('failed_last_error')}"
                 "\n  re-queue with `cctv-daemon uploads retry KEY|--all`")
    return text


def _fleet_line(f: dict[str, Any], _now: float) -> str:
    nodes = ", ".join(f"{n.get('node_id')} (shard {n.get('shard')})" for n in f.get("live_nodes") or [])
    text = (f"fleet: node {f.get('node_id')}, shard {f.get('shard')}, holds {len(f.get('held') or [])} camera "
            f"lease(s); live nodes: {nodes or '-'}")
    if not f.get("db_ok") and f.get("held"):
        text += f"\n  LEASE DATABASE UNREACHABLE (recording goes on with the leases held): {f.get('error')}"
    elif not f.get("db_ok"):
        text += f"\n  LEASE DATABASE UNREACHABLE (no camera is recorded here until it answers): {f.get('error')}"
    if f.get("unowned"):
        text += f"\n  UNOWNED cameras (no node records them): {', '.join(f['unowned'])}"
    if f.get("duplicate_node_id"):
        text += f"\n  another live process uses node id {f.get('node_id')} (set fleet.nodeId apart)"
    return text


def _api_line(a: dict[str, Any], _now: float) -> str:
    if a.get("state") == "listening":
        return f"api: {a.get('url')} (sign in: cctv-daemon ui-url)"
    return f"api: {a.get('state')}" + (f" ({a['error']})" if a.get("error") else "")


_RENDER: dict[str, Callable[[dict[str, Any], float], str]] = {
    "api": _api_line,
    "fleet": _fleet_line,
    "retention": _retention_line,
    "uploader": _uploader_line,
}
