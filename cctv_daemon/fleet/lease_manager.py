"""The lease thread: every ``leaseSeconds / 5`` it heartbeats this process, renews the leases it holds, takes the
ones its shard should have, hands back those a live preferred node should have, and publishes a frozen
:class:`LeaseView` that the main loop reads (service/fleet_gate.py). All lease I/O happens on this thread, on the
lease engine's own connection: a slow or dead database never delays the main loop.

Which cameras a node *wants*: those whose rendezvous owner among the **live** shards (fresh heartbeats, this
node included) is this node's shard. So a dead node's cameras go to the next shard in each camera's order, and come
back when it is live again (the interim holder stops the camera, releases the lease, the preferred node takes it).

Rules that keep footage first:
- a node that cannot reach the database keeps every lease it held (it goes on recording) and takes none;
- a lease seen taken by another process is given up at once (the loop stops the camera), and the overlap, when
  the other node took it while we were cut off, is kept and marked: a row in ``segment_overlaps`` (camera, both
  node ids, from the other node's take-over until this node's ffmpeg stopped; catalog/overlaps.py marks the
  segments inside) and the log line ``double_recording``;
- nothing is done before the catalog's schema is there (``schema_wait``: a node started while the database was
  down waits for the catalog to migrate it). Meanwhile a node of a fleet with shards holds no camera; a single
  node (``presume``: ``fleet.shards`` 1) records all its cameras as if it held them (footage first), takes their
  leases as soon as the database answers, and gives up (marking the overlap) any another process holds;
- an expired (not released) lease of another process is taken only after this node has been connected for a
  full TTL: after a database outage every node first gets the chance to renew its own leases.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from cctv_daemon.catalog.engine import error_text
from cctv_daemon.fleet import rendezvous
from cctv_daemon.fleet.identity import FleetIdentity
from cctv_daemon.fleet.lease_store import LeaseRow, LeaseStore

log = structlog.get_logger("cctv_daemon.fleet")

RENEW_FRACTION = 5  # renewed every TTL / 5
FAST_PERIOD_S = 1.0  # while waiting for a hand-back or a camera to stop: look again this often

HELD, RELEASING, STANDBY, UNOWNED, WAITING = "held", "releasing", "standby", "unowned", "waiting"


@dataclass(frozen=True)
class CameraLease:
    """One camera as this node sees it. ``mine``: this node may record it (the loop starts/stops on this)."""

    camera: str
    state: str  # held | releasing | standby | unowned | waiting
    mine: bool
    reason: str
    holder: str | None = None  # node id of the holder (None: nobody holds it)
    holder_shard: int | None = None
    expires_at: float | None = None  # the database's clock, epoch seconds
    generation: int | None = None  # fencing counter of the lease
    acquired_at: float | None = None  # when the holder took it (the database's clock)
    preferred_shard: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LeaseView:
    node_id: str
    shard: int
    instance: str
    cameras: Mapping[str, CameraLease] = field(default_factory=lambda: MappingProxyType({}))
    db_ok: bool = False
    last_ok_at: float | None = None  # wall clock of the last successful round
    error: str | None = None
    live_nodes: tuple[tuple[str, int], ...] = ()
    duplicate_node_id: bool = False
    rounds: int = 0

    def unowned(self) -> list[str]:
        return sorted(name for name, lease in self.cameras.items()
                      if lease.state == UNOWNED or (lease.state == WAITING and lease.holder is None))

    def status(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "shard": self.shard, "db_ok": self.db_ok, "last_ok_at": self.last_ok_at,
                "error": self.error, "live_nodes": [{"node_id": n, "shard": s} for n, s in self.live_nodes],
                "duplicate_node_id": self.duplicate_node_id,
                "held": sorted(n for n, lease in self.cameras.items() if lease.mine),
                "unowned": self.unowned(),
                "leases": {name: lease.to_dict() for name, lease in sorted(self.cameras.items())}}


def _read_instance(path: Path | None) -> str | None:
    try:
        text = path.read_text().strip() if path is not None else ""
    except OSError:
        return None
    return text if text.isalnum() and len(text) <= 40 else None


def _until(ts: float | None) -> str:
    return "?" if ts is None else time.strftime("%H:%M:%SZ", time.gmtime(ts))


class LeaseManager:
    """A daemon component (``fleet``) owning the lease thread. The loop calls :meth:`offer` each tick with the
    configured cameras and those whose ffmpeg still runs, and reads :attr:`view`."""

    name = "fleet"

    def __init__(self, store: LeaseStore, identity: FleetIdentity, ttl: float, *,
                 instance_file: Path | None = None, schema_wait: Callable[[], str | None] = lambda: None,
                 presume: bool = False) -> None:
        self.store = store
        self.identity = identity
        self.ttl = ttl
        self.period = ttl / RENEW_FRACTION
        self.instance = uuid.uuid4().hex
        # one line, no SQL, the URL's password hidden: the catalog's wording for the same database
        self.error_text: Callable[[BaseException], str] = lambda exc: error_text(exc, store.engine.url)
        self.view = LeaseView(identity.node_id, identity.shard, self.instance)
        self.on_change: Callable[[], None] = lambda: None  # the root wires the loop's waker here
        self._cameras: tuple[str, ...] = ()
        self._running: frozenset[str] = frozenset()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected_since: float | None = None  # monotonic, since the last failed round
        # None once the catalog's tables are there; else why not yet (the catalog database has not answered)
        self.schema_wait = schema_wait
        self._open_overlaps: dict[str, int] = {}  # camera -> segment_overlaps id, until our ffmpeg stopped
        # before the database first answers: record every camera as if its lease were ours (a single node only)
        self.presume = presume
        self._reached = False
        self._presumed: frozenset[str] = frozenset()
        self.started_at = time.time()
        self._error_logged: str | None = None
        self.view_now = 0.0  # the database's clock at the end of the last round
        # {stateDir}/fleet-instance: the previous process of this recording folder (the instance lock makes sure
        # it is gone), whose leases this one adopts at once after a crash or restart
        self.instance_file = instance_file
        self._previous = _read_instance(instance_file)

    # -- the loop's side (any thread: reference swaps only) ----------------------------------------------------
    def offer(self, cameras: tuple[str, ...], running: frozenset[str]) -> None:
        if running != self._running and (self._running - running):
            self._wake.set()  # a camera we are handing over has stopped: release it now
        self._cameras, self._running = cameras, running

    def mine(self, camera: str) -> bool:
        lease = self.view.cameras.get(camera)
        if lease is None:  # no round has seen it yet: a single node records before the database answers
            return self.presume and not self._reached
        return lease.mine

    # -- component -------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.instance_file is not None:
            try:
                self.instance_file.write_text(self.instance + "\n")
            except OSError as exc:
                log.warning("fleet_instance_not_saved", path=str(self.instance_file), error=exc.strerror,
                            detail="after a restart, this node waits for its old leases to expire")
        self._thread = threading.Thread(target=self._run, name="fleet-lease", daemon=True)
        self._thread.start()

    def tick(self) -> None:
        pass

    def stop(self) -> None:
        """After the cameras stopped: release every lease (the next node takes them at once) and leave."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.period + 10)
        if self.schema_wait() is not None:  # never reached the catalog database: nothing to release
            self.store.engine.dispose()
            return
        try:
            with self.store.engine.begin() as conn:
                released = self.store.release(conn, self.instance)
                self.store.leave(conn, self.instance)
            log.info("leases_released", count=released, node=self.identity.node_id)
        except SQLAlchemyError as exc:
            log.warning("leases_not_released", error=self.error_text(exc),
                        detail="they expire after fleet.leaseSeconds")
        self.store.engine.dispose()

    def status(self) -> dict[str, Any]:
        return self.view.status()

    # -- the thread ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            fast = self.round()
            self._wake.wait(FAST_PERIOD_S if fast else self.period)
            self._wake.clear()

    def round(self) -> bool:
        """One heartbeat/renew/take round; publishes the view. True when a quick next round is useful."""
        prev = self.view
        cameras = self._cameras
        running = self._running
        waiting = self.schema_wait()
        if waiting is not None:  # started while the catalog database was down: no table to read yet
            if self._error_logged != waiting:
                log.warning("fleet_waits_for_catalog", error=waiting,
                            detail="no camera is recorded here until the catalog database answers")
            self._error_logged = waiting
            self._publish(prev, replace(prev, cameras=self._presumption(prev, cameras), db_ok=False,
                                        error=f"waiting for the catalog database: {waiting}", rounds=prev.rounds + 1))
            return False
        try:
            view = self._round(prev, cameras, running)
        except SQLAlchemyError as exc:
            text = self.error_text(exc)
            if self._connected_since is not None or self._error_logged != text:
                log.warning("lease_db_unreachable", error=text,
                            detail="recording goes on with the leases held; none is taken until it is back")
            self._error_logged = text
            self._connected_since = None
            view = replace(prev, cameras=self._presumption(prev, cameras), db_ok=False, error=text,
                           rounds=prev.rounds + 1)
        if self._connected_since is None and view.db_ok:
            self._connected_since = time.monotonic()
            log.info("lease_db_connected", node=self.identity.node_id, shard=self.identity.shard)
            self._error_logged = None
        if view.db_ok:
            self._previous = None  # adopted (or nothing to adopt): once
            self._reached, self._presumed = True, frozenset()
        self._publish(prev, view)
        return any(lease.state in (RELEASING, WAITING) for lease in view.cameras.values())

    def _presumption(self, prev: LeaseView, cameras: tuple[str, ...]) -> Mapping[str, CameraLease]:
        """The cameras a single node records before the database first answered (``presume``): all of them."""
        if not self.presume or self._reached:
            return prev.cameras
        self._presumed = frozenset(cameras)
        why = "recording before the catalog database answers: its lease is taken when it does"
        return MappingProxyType({cam: CameraLease(cam, HELD, True, why) for cam in cameras})

    def _round(self, prev: LeaseView, cameras: tuple[str, ...], running: frozenset[str]) -> LeaseView:
        me, ident, ttl = self.instance, self.identity, self.ttl
        settled = self._connected_since is not None and time.monotonic() - self._connected_since >= ttl
        out: dict[str, CameraLease] = {}
        with self.store.engine.begin() as conn:
            if self._previous is not None and self._previous != me:
                adopted = self.store.adopt(conn, self._previous, me, ttl)
                if adopted:
                    log.info("leases_adopted", count=adopted, previous=self._previous,
                             detail="this recording folder's previous process is gone: its leases are ours")
            self.store.heartbeat(conn, me, ident.node_id, ident.shard, ttl)
            nodes = self.store.live_nodes(conn)
            rows = self.store.read(conn, cameras)
            self.store.renew(conn, me, [c for c, r in rows.items() if r.instance == me], ttl)
            now = self.store.now(conn)
            live = {n.shard for n in nodes} | {ident.shard}
            to_release: list[str] = []
            for cam in cameras:
                preferred = rendezvous.owner(cam, sorted(live))
                # a camera recorded before the database answered: its lease now, unless another process has it
                lease = self._decide(cam, rows.get(cam), preferred, now, settled or cam in self._presumed, running,
                                     to_release, conn)
                out[cam] = lease
            if to_release:
                self.store.release(conn, me, to_release)
            rows = self.store.read(conn, cameras)  # as committed by this round: what status shows
            overlaps = self._overlaps(conn, prev, rows, running)
            self.view_now = self.store.now(conn)
        self._open_overlaps = overlaps
        final = {cam: self._described(lease, rows.get(cam)) for cam, lease in out.items()}
        dup = any(n.node_id == ident.node_id and n.instance != me for n in nodes)
        return LeaseView(ident.node_id, ident.shard, me, MappingProxyType(final), db_ok=True, last_ok_at=time.time(),
                         live_nodes=tuple((n.node_id, n.shard) for n in nodes), duplicate_node_id=dup,
                         rounds=prev.rounds + 1)

    def _overlaps(self, conn: Any, prev: LeaseView, rows: dict[str, LeaseRow],
                  running: frozenset[str]) -> dict[str, int]:
        """Note each double recording seen this round (we held the camera and still record it, and another
        process has taken its lease), and end those whose camera has stopped here. Returns the open ones."""
        out = dict(self._open_overlaps)
        for cam, oid in list(out.items()):
            if cam not in running:
                self.store.end_overlap(conn, oid)
                del out[cam]
        for cam, row in rows.items():
            before = prev.cameras.get(cam)
            if (before is not None and before.state == HELD and cam in running and cam not in out
                    and row.instance != self.instance and not row.released):
                since = row.acquired_at if cam not in self._presumed else max(row.acquired_at, self.started_at)
                out[cam] = self.store.note_overlap(conn, cam, self.identity.node_id, row.node_id, since)
        return out

    def _decide(self, cam: str, row: LeaseRow | None, preferred: int, now: float,
                settled: bool, running: frozenset[str], to_release: list[str], conn: Any) -> CameraLease:
        me, ident = self.instance, self.identity
        if row is not None and row.instance == me and not row.released:
            if preferred != ident.shard:  # its preferred node is live again: hand it back
                if cam in running:
                    return CameraLease(cam, RELEASING, False, f"handing back to shard {preferred}",
                                       preferred_shard=preferred)
                to_release.append(cam)
                return CameraLease(cam, STANDBY, False, f"handed back to shard {preferred}",
                                   preferred_shard=preferred)
            return CameraLease(cam, HELD, True, "lease held", preferred_shard=preferred)
        if row is not None and row.live(now):
            return CameraLease(cam, STANDBY, False, "", preferred_shard=preferred)
        if preferred != ident.shard:  # free or expired, for another (live) shard to take
            return CameraLease(cam, UNOWNED, False, f"for shard {preferred}", preferred_shard=preferred)
        if not settled and row is not None and not row.released:
            return CameraLease(cam, WAITING, False, "waiting one lease period after connecting before taking "
                               "over an expired lease", preferred_shard=preferred)
        if not settled and rendezvous.owner(cam, sorted(set(range(ident.shards)) | {ident.shard})) != ident.shard:
            # another shard's camera whose node is not live (yet): at a fleet's start every node comes up within
            # seconds, so take it over only after a lease period
            return CameraLease(cam, WAITING, False, f"shard {rendezvous.owner(cam, ident.shards)} is not live: "
                               "taking it over after one lease period", preferred_shard=preferred)
        if self.store.acquire(conn, cam, me, ident.node_id, ident.shard, self.ttl):
            return CameraLease(cam, HELD, True, "lease taken", preferred_shard=preferred)
        return CameraLease(cam, STANDBY, False, "", preferred_shard=preferred)

    def _described(self, lease: CameraLease, row: LeaseRow | None) -> CameraLease:
        held = row is not None and not row.released
        holder = row.node_id if held and row is not None else None
        if lease.state == HELD and not (row is not None and row.instance == self.instance):
            lease = replace(lease, state=STANDBY, mine=False)  # lost within the round (cannot happen; be safe)
        reason = lease.reason
        if lease.state == HELD and row is not None:
            reason = f"lease held until {_until(row.expires_at)} (generation {row.generation})"
        elif lease.state in (STANDBY, UNOWNED, WAITING) and row is not None and held:
            reason = (f"lease held by node {row.node_id} (shard {row.shard}) until {_until(row.expires_at)}"
                      + (f"; {lease.reason}" if lease.reason else ""))
        elif lease.state in (STANDBY, UNOWNED) and not held:
            reason = "no node holds its lease" + (f" ({lease.reason})" if lease.reason else "")
        if lease.state == STANDBY and row is not None and held and not row.live(self.view_now):
            lease = replace(lease, state=UNOWNED)  # expired, nobody took it yet
        return replace(lease, reason=reason, holder=holder, holder_shard=row.shard if held and row else None,
                       expires_at=row.expires_at if held and row else None,
                       acquired_at=row.acquired_at if held and row else None,
                       generation=row.generation if row is not None else None)

    def _publish(self, prev: LeaseView, view: LeaseView) -> None:
        for cam, lease in view.cameras.items():
            before = prev.cameras.get(cam)
            if before is not None and before.state == HELD and lease.state == STANDBY and lease.holder is not None:
                log.warning("lease_lost", camera=cam, holder=lease.holder, holder_shard=lease.holder_shard,
                            generation=lease.generation,
                            detail="another node took this camera's lease; stopping it here")
                if cam in self._running and lease.acquired_at is not None:
                    # we were cut off and went on recording while the other node took over: both copies are kept
                    log.warning("double_recording", camera=cam, nodes=[self.identity.node_id, lease.holder],
                                since=lease.acquired_at, until=self.view_now,
                                detail="two nodes recorded this camera in this interval; both copies are kept")
            elif (before is None or not before.mine) and lease.mine:
                log.info("lease_taken" if view.db_ok else "recording_before_lease", camera=cam,
                         node=self.identity.node_id, shard=self.identity.shard,
                         generation=lease.generation)
            elif lease.state == STANDBY and (before is None or before.state != STANDBY):
                log.info("camera_standby", camera=cam, reason=lease.reason)
        changed = ({c: x.mine for c, x in view.cameras.items()} != {c: x.mine for c, x in prev.cameras.items()})
        self.view = view
        if changed or view.db_ok != prev.db_ok:
            self.on_change()
