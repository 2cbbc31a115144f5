"""The composition root: the one place that builds the daemon's components and wires them together, in this order
(each step only uses what earlier steps built; docs/design.md shows the same map):

 1. clock, event bus, command queue
 2. segments: finisher (moves files, publishes FinishedSegment), hand-off (watcher + one worker thread)
 3. catalog services: the catalog is the FIRST bus subscriber (a segment has its row before anyone else sees it),
    then retention (a component too)
 4. the daemon (main loop); its per-camera counters subscribe after the catalog
 5. uploader (only with s3Config): subscribes after the catalog; deletes through the catalog after a verified upload
 6. service components (service=True, i.e. `cctv-daemon run`): control socket, config reload, systemd notify,
    status.json
 7. the HTTP API (service=True and api.enabled): a bus subscriber (last) for its event stream, a component

BUS_ORDER and COMPONENT_ORDER state the orders in code; build_daemon() checks the result against them.
Components start in COMPONENT_ORDER and stop in reverse: the uploader stops first (its grace period), then the
status file records "stopped", and the control socket goes last, so commands are answered during the whole stop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cctv_daemon.catalog.services import CatalogServices
from cctv_daemon.config.model import Config
from cctv_daemon.config.preflight import catalog_node_id, node_identity
from cctv_daemon.config.rules import shared_catalog
from cctv_daemon.core.clock import Clock, SystemClock
from cctv_daemon.core.events import CameraStateChanged, EventBus
from cctv_daemon.segments.finisher import SegmentFinisher
from cctv_daemon.segments.handoff import SegmentHandoff
from cctv_daemon.service.catalog_commands import CheckJobs
from cctv_daemon.service.commands import Args, CommandError, CommandQueue
from cctv_daemon.service.control import ControlServer
from cctv_daemon.service.daemon import Component, Daemon
from cctv_daemon.service.reload import ConfigReloader
from cctv_daemon.service.sd_notify import SystemdNotifier
from cctv_daemon.service.snapshot import component_name
from cctv_daemon.service.status import StatusWriter

if TYPE_CHECKING:
    from cctv_daemon.upload.uploader import Uploader

BUS_ORDER = ("catalog", "retention", "retention_disk_full", "camera_counters", "uploader", "api_events")
COMPONENT_ORDER = ("control", "catalog", "fleet", "retention", "reload", "systemd", "status_file", "api", "uploader")


def shared_catalog_url(config: Config) -> str | None:
    """The catalog URL when it is a shared database (PostgreSQL, MySQL/MariaDB): the fleet's leases live there.
    None for the SQLite catalog (single-node: no leases)."""
    url = config.catalog.url
    return url if url is not None and shared_catalog(url) else None


def build_daemon(config: Config, ffmpeg_exe: str, clock: Clock | None = None, *, service: bool = True,
                 control_transport: str | None = None) -> Daemon:
    # 1.
    clock = clock or SystemClock()
    bus = EventBus()
    commands = CommandQueue()
    save_path, state_dir = config.storageConfig.savePath, config.storageConfig.state_dir
    # 2.
    finisher = SegmentFinisher(save_path, state_dir, ffmpeg_exe, bus, clock)
    handoff = SegmentHandoff(finisher.root, finisher)  # {savePath}/.cctv/staging, whatever stateDir is
    # 3.
    storage = CatalogServices(config, clock, catalog_node_id(config))
    storage.deleter.publish = bus.publish  # SegmentDeleted, from the one deletion path
    bus.subscribe("catalog", storage.add_segment)  # retries after making room when the disk is full
    bus.subscribe("retention", storage.retention.on_segment)
    CheckJobs(storage.catalog, state_dir, ffmpeg_exe).register(commands)  # `check --repair/--rebuild` run here
    commands.register("ack_lost", lambda _args: storage.retention.acknowledge_lost())  # `cctv-daemon ack-lost`
    bus.on(CameraStateChanged, "retention_disk_full", storage.retention.on_camera_state)
    parts: dict[str, Component] = {"catalog": storage, "retention": storage.retention}
    # 4.
    daemon = Daemon(config, ffmpeg_exe, clock, bus, finisher, handoff, storage, commands)
    bus.subscribe("camera_counters", daemon.count_segment)
    # 4b. the fleet: with a shared catalog, each camera records only under its lease (docs/scale-out.md)
    lease_url = shared_catalog_url(config)
    if lease_url is not None:
        from cctv_daemon.catalog.engine import parse_url
        from cctv_daemon.fleet.lease_manager import LeaseManager  # SQLAlchemy engine of its own: only here
        from cctv_daemon.fleet.lease_store import LeaseStore, lease_engine
        from cctv_daemon.service.fleet_gate import FleetGate

        store = LeaseStore(lease_engine(parse_url(lease_url)), config.catalog.tablePrefix)
        manager = LeaseManager(store, node_identity(config), config.fleet.leaseSeconds,
                               instance_file=state_dir / "fleet-instance",
                               schema_wait=lambda: storage.waiting,  # the lease tables come with the schema
                               presume=config.fleet.shards == 1)  # a single node records while it waits
        manager.on_change = daemon.waker.wake  # a lease taken or lost: the loop acts at once
        daemon.gate = FleetGate(daemon, manager)
        parts["fleet"] = manager
    # 5.
    if config.s3Config is not None:
        from cctv_daemon.upload.uploader import Uploader  # boto3 only when uploads are configured

        up = Uploader.from_config(config, save_path, state_dir, clock, catalog=storage.catalog)
        up.publish = bus.publish  # SegmentUploaded after each verified upload
        if config.storageConfig.clearAfterUpload:
            # Only after a verified upload, through the catalog's ordered, durable deletion (catalog/deletion.py).
            def delete_uploaded(rel_path: str) -> None:
                storage.delete_segment(rel_path, "uploaded (clearAfterUpload)")

            up.on_uploaded = delete_uploaded
        bus.subscribe("uploader", up.enqueue_segment)
        parts["uploader"] = up
        commands.register("retry_uploads", lambda args: _retry_uploads(up, args))
    # 6.
    if service:
        reloader = ConfigReloader(daemon)
        daemon.reload_callbacks.append(reloader.reload)
        commands.register("reload", lambda _args: {"ok": reloader.reload(), **reloader.last})
        notifier = SystemdNotifier(lambda: daemon.snapshot.summary(), clock=clock)
        daemon.ready_callbacks.append(notifier.ready)
        daemon.stopping_callbacks.append(notifier.stopping)
        writer = StatusWriter(state_dir, lambda: daemon.snapshot, clock)
        daemon.stopping_callbacks.append(writer.write)
        parts.update(control=ControlServer(state_dir, commands, lambda: daemon.snapshot, control_transport),
                     reload=reloader, systemd=notifier, status_file=writer)
        # 7. the HTTP API: reads the snapshot, acts through commands, streams bus events (api/server.py)
        if config.api.enabled:
            from cctv_daemon.api.events_stream import EventBroker  # FastAPI/uvicorn only when the API is on
            from cctv_daemon.api.server import ApiServer

            broker = EventBroker()
            bus.subscribe_all("api_events", broker.publish)
            parts["api"] = ApiServer(config, ffmpeg_exe, commands, lambda: daemon.snapshot, broker,
                                     catalog_node_id(config))
    daemon.components = [parts[name] for name in COMPONENT_ORDER if name in parts]
    _check_order(bus, daemon.components)
    return daemon


def _retry_uploads(up: Uploader, args: Args) -> dict[str, object]:
    """Command `retry_uploads` {"key": KEY} or {} for every failed upload."""
    key = args.get("key")
    if key is not None and not isinstance(key, str):
        raise CommandError("retry_uploads: key must be a string")
    try:
        return {"requeued": up.retry(key)}
    except KeyError:
        raise CommandError(f"retry_uploads: unknown upload {key!r}") from None
    except ValueError as exc:
        raise CommandError(f"retry_uploads: {exc}") from None


def _check_order(bus: EventBus, components: list[Component]) -> None:
    subs = bus.subscribers()
    if subs != [name for name in BUS_ORDER if name in subs]:
        raise AssertionError(f"bus subscribers out of order: {subs} (wanted {BUS_ORDER})")
    names = [component_name(comp) for comp in components]
    if names != [name for name in COMPONENT_ORDER if name in names]:
        raise AssertionError(f"components out of order: {names} (wanted {COMPONENT_ORDER})")
