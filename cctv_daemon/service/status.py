"""status.json: the daemon's own account of itself, rewritten atomically every ~2 s from its main loop, read
by `cctv-daemon status` from any process or user (no socket needed). Schema documented in docs/cli.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from cctv_daemon import __version__
from cctv_daemon.core import constants as c
from cctv_daemon.core.redact import redact

if TYPE_CHECKING:
    from cctv_daemon.service.daemon import Daemon

log = structlog.get_logger("cctv_daemon.status")


def status_path(state_dir: Path) -> Path:
    return state_dir / c.STATUS_FILENAME


def component_name(comp: object) -> str:
    name = getattr(comp, "name", None)
    if isinstance(name, str) and name:
        return name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(comp).__name__).lower()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def camera_status(cam: Any) -> dict[str, Any]:
    k = cam.counters
    return {
        "state": cam.state.value,
        "reason": cam.reason,
        "since": k.state_since,
        "last_segment_at": k.last_segment_at,
        "segments": k.segments,
        "starts": k.starts,
        "reconnects": k.reconnects,
        "stalls": k.stalls,
        "last_error": redact(k.last_error) if k.last_error else None,
        "ffmpeg_pid": cam.proc.pid if cam.proc is not None else None,
        "enabled": cam.config.enabled,
    }


def disk_status(config: Any) -> dict[str, Any]:
    sc = config.storageConfig
    out: dict[str, Any] = {"path": str(sc.savePath), "min_free_gb": sc.minFreeDiskGB,
                           "cap_gb": sc.clearWhenFilePathReachGB, "retention_days": sc.retentionDays}
    try:
        du = shutil.disk_usage(sc.savePath)
        out.update(total_bytes=du.total, used_bytes=du.used, free_bytes=du.free,
                   low_space=du.free < sc.minFreeDiskGB * 1e9)
    except OSError as exc:
        out.update(total_bytes=None, used_bytes=None, free_bytes=None, low_space=None, error=str(exc))
    return out


def build_status(daemon: Daemon, started_at: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    components: dict[str, Any] = {}
    for comp in daemon.components:
        fn = getattr(comp, "status", None)
        if not callable(fn):
            continue
        name = component_name(comp)
        try:
            components[name] = _jsonable(fn())
        except Exception as exc:  # one broken component must not hide the rest
            components[name] = {"error": f"status() failed: {redact(str(exc))}"}
    config = daemon.config
    return {
        "schema": c.STATUS_SCHEMA,
        "pid": os.getpid(),
        "version": __version__,
        "started_at": started_at,
        "updated_at": daemon.clock.time(),
        "config": str(config.path) if config.path else None,
        "save_path": str(config.storageConfig.savePath),
        "cameras": {name: camera_status(cam) for name, cam in daemon.cameras.items()},
        "disk": disk_status(config),
        "components": components,
        **(extra or {}),
    }


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    if os.name == "posix":
        os.chmod(tmp, 0o644)  # readable by other users: `status` from anyone's terminal
    os.replace(tmp, path)


class StatusWriter:
    """Daemon component: writes status.json every STATUS_PERIOD_S (not on every tick)."""

    name = "status_file"

    def __init__(self, daemon: Daemon, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.daemon = daemon
        self.path = status_path(daemon.state_dir)
        self.started_at = daemon.clock.time()
        self.extra = extra
        self._next = 0.0
        self.writes = 0
        self._failing = False

    def start(self) -> None:
        self.write()

    def tick(self) -> None:
        if self.daemon.clock.monotonic() >= self._next:
            self.write()

    def write(self, **overrides: Any) -> None:
        self._next = self.daemon.clock.monotonic() + c.STATUS_PERIOD_S
        try:
            data = build_status(self.daemon, self.started_at, self.extra() if self.extra else None)
            data.update(overrides)
            write_atomic(self.path, data)
            self.writes += 1
            self._failing = False
        except OSError as exc:
            if not self._failing:
                log.warning("status_not_written", path=str(self.path), error=str(exc))
            self._failing = True

    def stop(self) -> None:
        self.write(stopped=True)


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
    return text + ("; SHORT OF SPACE" if r.get("shortOfSpace") else "")


def _uploader_line(u: dict[str, Any], now: float) -> str:
    age = u.get("oldest_pending_age_s")
    text = f"uploads: {u.get('state')}, queue {u.get('queue_length', 0)}"
    if age is not None:
        text += f" (oldest waiting {_ago(float(age))})"
    text += f", done {u.get('uploads_done', 0)} ({_size(u.get('bytes_uploaded', 0))})"
    text += f", last error: {u['last_error']}" if u.get("last_error") else ""
    if u.get("threads_failing"):
        text += f"\n  uploader FAILING ({u.get('worker_errors')} errors): {u.get('worker_last_error')}"
    if u.get("failed_count"):
        oldest = _when(u.get("failed_oldest_start"), now)
        text += (f"\n  FAILED uploads (kept on disk): {u['failed_count']}, oldest {oldest}"
                 f" {u.get('failed_oldest_path')}, last error: {u.get('failed_last_error')}"
                 "\n  re-queue with `cctv-daemon uploads retry KEY|--all`")
    return text


_RENDER: dict[str, Callable[[dict[str, Any], float], str]] = {
    "retention": _retention_line,
    "uploader": _uploader_line,
}
