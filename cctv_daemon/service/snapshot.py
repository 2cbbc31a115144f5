"""The daemon's published state: an immutable Snapshot the main loop builds and publishes every tick (replacing
one reference), which any thread (control socket, status.json writer, sd_notify, later the HTTP API) reads without
a lock. Nothing outside the main loop reads the live cameras or components. Camera rows are rebuilt every tick;
disk and component statuses (SQL queries, statvfs) at most every COMPONENTS_PERIOD_S, as often as status.json is
written, and right after a command or signal (the `status` command of the control socket goes through the command
queue: it is answered with every part fresh), and carried over between."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cctv_daemon import __version__
from cctv_daemon.config.model import Config
from cctv_daemon.core import constants as c
from cctv_daemon.core.redact import redact

if TYPE_CHECKING:  # the CLI reads snapshots (status) without the recording machinery
    from cctv_daemon.recording.camera import Camera

COMPONENTS_PERIOD_S = c.STATUS_PERIOD_S  # 2 s before: retention's footage totals (SQL) were a third of the loop
PHASES = ("starting", "running", "stopping", "stopped")


_LEAVES = frozenset({str, int, float, bool, type(None)})


def freeze(value: Any) -> Any:
    """JSON-like data made read-only: dicts -> MappingProxyType, lists -> tuples (recursively)."""
    if type(value) in _LEAVES:  # most of a status: no abstract-class check for them
        return value
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class CameraSnapshot:
    state: str
    reason: str
    since: float
    last_segment_at: float | None
    segments: int
    starts: int
    reconnects: int
    stalls: int
    last_error: str | None
    ffmpeg_pid: int | None
    enabled: bool
    record_until: float | None = None  # wall clock end of a `record` command, None when recording continuously
    record_label: str | None = None  # the label of that `record` command
    lease: Mapping[str, Any] | None = None  # with a fleet: the camera's lease as this node sees it (fleet_gate.py)

    @classmethod
    def of(cls, cam: Camera, record_until: float | None = None, record_label: str | None = None) -> CameraSnapshot:
        return cls._made_of(_row_key(cam, record_until, record_label))

    @classmethod
    def _made_of(cls, key: tuple[Any, ...]) -> CameraSnapshot:
        (state, reason, since, last_at, segments, starts, reconnects, stalls, error, pid, enabled, until_wall,
         label) = key
        return cls(state=state, reason=reason, since=since, last_segment_at=last_at, segments=segments,
                   starts=starts, reconnects=reconnects, stalls=stalls, last_error=redact(error) if error else None,
                   ffmpeg_pid=pid, enabled=enabled, record_until=until_wall, record_label=label)

    @classmethod
    def rows(cls, cameras: Mapping[str, Camera], record_until: Mapping[str, float], labels: Mapping[str, str],
             wall_offset: float, seen: dict[str, tuple[tuple[Any, ...], CameraSnapshot]]) -> dict[str, CameraSnapshot]:
        """Every camera's row as of() makes it, the previous row itself when nothing in it changed (`seen`: name ->
        (what the row was made of, the row), updated here): no new row per camera per tick. The row is made from
        the values compared, read once (the hand-off's thread counts segments meanwhile): a row always shows what
        its key says."""
        out: dict[str, CameraSnapshot] = {}
        for name, cam in cameras.items():
            until = record_until.get(name)
            key = _row_key(cam, None if until is None else until + wall_offset, labels.get(name))
            prev = seen.get(name)
            if prev is not None and prev[0] == key:
                out[name] = prev[1]
                continue
            row = cls._made_of(key)
            seen[name] = (key, row)
            out[name] = row
        for gone in [name for name in seen if name not in out]:
            del seen[gone]
        return out

    def with_lease(self, lease: Mapping[str, Any] | None) -> CameraSnapshot:
        return replace(self, lease=None if lease is None else freeze(lease))

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if self.lease is None:
            del out["lease"]  # a single node: no lease key at all
        else:
            out["lease"] = thaw(self.lease)
        return out


def _row_key(cam: Camera, record_until: float | None, record_label: str | None) -> tuple[Any, ...]:
    """What a camera's row is made of, each value read once (CameraSnapshot._made_of's order)."""
    k, proc = cam.counters, cam.proc
    return (cam.state.value, cam.reason, k.state_since, k.last_segment_at, k.segments, k.starts, k.reconnects,
            k.stalls, k.last_error, None if proc is None else proc.pid, cam.config.enabled, record_until, record_label)


@dataclass(frozen=True)
class Snapshot:
    pid: int
    started_at: float
    updated_at: float
    phase: str  # starting | running | stopping | stopped
    config: str | None
    save_path: str
    cameras: Mapping[str, CameraSnapshot] = field(default_factory=_empty)
    disk: Mapping[str, Any] = field(default_factory=_empty)
    components: Mapping[str, Any] = field(default_factory=_empty)
    version: str = __version__

    def summary(self) -> str:
        """One line for systemd's STATUS=: "2 recording, 1 backoff"."""
        counts: dict[str, int] = {}
        for cam in self.cameras.values():
            counts[cam.state] = counts.get(cam.state, 0) + 1
        return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no cameras"

    def to_dict(self) -> dict[str, Any]:
        """The status JSON (schema in docs/cli.md): status.json and `status --json`."""
        out = self.head()
        out.update(cameras={name: cam.to_dict() for name, cam in self.cameras.items()}, disk=thaw(self.disk),
                   components=thaw(self.components))
        return out

    def to_json(self) -> str:
        """json.dumps(self.to_dict(), sort_keys=True, default=str) (status.json), in one pass of the C encoder
        over the frozen parts as they are (no thawed copy of them; one encoder built once): the main loop writes it
        every 5 s (tests/unit/test_status_text.py)."""
        out = self.head()
        out.update(cameras={name: cam.to_dict() for name, cam in self.cameras.items()}, disk=self.disk,
                   components=self.components)
        return _status_json(out)

    def head(self) -> dict[str, Any]:
        """to_dict() but its cameras, disk and components."""
        out: dict[str, Any] = {
            "schema": c.STATUS_SCHEMA, "pid": self.pid, "version": self.version, "started_at": self.started_at,
            "updated_at": self.updated_at, "phase": self.phase, "config": self.config, "save_path": self.save_path,
        }
        if self.phase != "running":
            out[self.phase] = True
        if self.phase == "stopped":
            out["stopping"] = True
        return out


_dumps = json.JSONEncoder(default=str).encode  # json.dumps(value, default=str) without an encoder built per call


def _thawed(value: Any) -> Any:
    """What thaw() makes of a frozen mapping, for the encoder (which writes a tuple as a list itself), else str."""
    return dict(value) if isinstance(value, Mapping) else str(value)


_status_json = json.JSONEncoder(sort_keys=True, default=_thawed).encode


def component_name(comp: object) -> str:
    name = getattr(comp, "name", None)
    if isinstance(name, str) and name:
        return name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(comp).__name__).lower()


def components_status(components: Iterable[object],
                      previous: dict[str, tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Each component's status() as JSON-like data. With `previous` (name -> (JSON text, frozen value), updated
    here), a status whose JSON text did not change keeps its earlier frozen value: frozen, not decoded again."""
    out: dict[str, Any] = {}
    for comp in components:
        fn = getattr(comp, "status", None)
        if not callable(fn):
            continue
        name = component_name(comp)
        try:
            text = _dumps(fn())
        except Exception as exc:  # one broken component must not hide the rest
            error = {"error": f"status() failed: {redact(str(exc))}"}
            out[name] = error if previous is None else freeze(error)
            continue
        if previous is None:
            out[name] = json.loads(text)
            continue
        seen = previous.get(name)
        if seen is None or seen[0] != text:
            seen = previous[name] = (text, freeze(json.loads(text)))
        out[name] = seen[1]
    return out


def disk_status(config: Config) -> dict[str, Any]:
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


class SnapshotPublisher:
    """Owned by the main loop: build() is called from it only; `current` may be read from any thread."""

    def __init__(self, config: Config, started_at: float) -> None:
        self.started_at = started_at
        self.current = Snapshot(pid=os.getpid(), started_at=started_at, updated_at=started_at, phase="starting",
                                config=str(config.path) if config.path else None,
                                save_path=str(config.storageConfig.savePath))
        self._slow_at = float("-inf")
        self._seen: dict[str, tuple[str, Any]] = {}  # component -> (its status' JSON text, that status frozen)
        self.published = 0

    def publish(self, *, config: Config, now: float, monotonic: float, phase: str,
                cameras: Mapping[str, CameraSnapshot], components: Iterable[object],
                refresh_all: bool = False) -> Snapshot:
        prev = self.current
        disk, comps = prev.disk, prev.components
        if refresh_all or monotonic >= self._slow_at + COMPONENTS_PERIOD_S:
            self._slow_at = monotonic
            disk = freeze(disk_status(config))
            comps = MappingProxyType(components_status(components, self._seen))  # its values frozen already
        snap = Snapshot(pid=prev.pid, started_at=self.started_at, updated_at=now, phase=phase,
                        config=str(config.path) if config.path else None,
                        save_path=str(config.storageConfig.savePath),
                        cameras=MappingProxyType(dict(cameras)), disk=disk, components=comps)
        self.current = snap  # one reference replaced: readers see the old or the new snapshot, never a mix
        self.published += 1
        return snap
