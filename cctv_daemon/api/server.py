"""The HTTP API as a daemon component: uvicorn serving the FastAPI app (api/app.py) in one thread of the daemon,
without signal handlers of its own (uvicorn installs none outside the main thread; the daemon's stay). The socket
is bound in start(): a port already in use is logged and shown in `status` (components.api), and recording goes
on without the API. Where it listens goes to {stateDir}/api.json for the CLI (`ui-url`)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import structlog

from cctv_daemon.api import auth
from cctv_daemon.api.audit import AuditLog
from cctv_daemon.api.events_stream import EventBroker
from cctv_daemon.config.model import Config
from cctv_daemon.core import constants as c
from cctv_daemon.service.commands import CommandQueue
from cctv_daemon.service.snapshot import Snapshot

log = structlog.get_logger("cctv_daemon.api")

STOP_TIMEOUT_S = 5.0
HOUSEKEEPING_S = 1.0


def info_path(state_dir: Path) -> Path:
    return state_dir / c.API_INFO_FILENAME


def read_info(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(info_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class ApiServer:
    name = "api"

    def __init__(self, config: Config, ffmpeg_exe: str, commands: CommandQueue,
                 snapshot: Callable[[], Snapshot], broker: EventBroker, node_id: str) -> None:
        self.config = config
        self.node_id = node_id  # this node's catalog rows (a shared catalog lists every node's)
        self.ffmpeg_exe = ffmpeg_exe
        self.commands = commands
        self.snapshot = snapshot
        self.broker = broker
        self.state_dir = config.storageConfig.state_dir
        self.state = "disabled" if not config.api.enabled else "not started"
        self.error: str | None = None
        self.url: str | None = None
        self.port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._catalog: Any = None  # its own Catalog, closed at stop() once the server thread has ended

    def start(self) -> None:
        if not self.config.api.enabled:
            return
        try:
            self._start()
        except Exception as exc:  # the API never takes recording down
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("api_not_started", error=self.error, action="recording goes on without the API")

    def _start(self) -> None:
        import uvicorn

        from cctv_daemon.api.app import create_app
        from cctv_daemon.api.context import ApiContext
        from cctv_daemon.catalog import labels
        from cctv_daemon.catalog.store import Catalog

        api = self.config.api
        tokens = auth.load_or_create(self.state_dir)
        try:
            sock = _bind(api.host, api.port)
        except OSError as exc:
            self.state, self.error = "failed", f"cannot listen on {api.host}:{api.port}: {exc.strerror or exc}"
            log.error("api_port_unavailable", host=api.host, port=api.port, error=str(exc.strerror or exc),
                      action="recording goes on without the API")
            return
        self.port = int(sock.getsockname()[1])
        tls = api.tlsCert is not None
        host = f"[{api.host.strip('[]')}]" if ":" in api.host else api.host
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        # wait_for_database: the API answers 503 for catalog reads until the database answers
        catalog = self._catalog = Catalog.from_config(self.config, self.node_id, wait_for_database=True)
        labels.ensure_table(catalog)
        ctx = ApiContext(config=self.config, ffmpeg_exe=self.ffmpeg_exe, tokens=tokens, snapshot=self.snapshot,
                         commands=self.commands, catalog=catalog, broker=self.broker,
                         audit=AuditLog(self.state_dir), api_status=self.status, presign=self._presigner(),
                         download=self._downloader())
        cfg = uvicorn.Config(create_app(ctx), log_config=None, access_log=False, lifespan="off",
                             ssl_certfile=str(api.tlsCert) if api.tlsCert else None,
                             ssl_keyfile=str(api.tlsKey) if api.tlsKey else None,
                             proxy_headers=api.behindTlsProxy, timeout_graceful_shutdown=1, server_header=False)
        self._server = _quiet_server(cfg)
        server = self._server

        def serve() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:
                self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
                log.error("api_failed", error=self.error, action="recording goes on without the API")
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name="api", daemon=True)
        self._thread.start()
        self.state = "listening"
        _write_info(self.state_dir, {"url": self.url, "host": api.host, "port": self.port, "pid": os.getpid(),
                                     "tls": tls})
        log.info("api_listening", url=self.url)

    def _downloader(self) -> Callable[[str, Path], None] | None:
        if self.config.s3Config is None:
            return None
        from cctv_daemon.upload.s3_client import downloader

        return downloader(self.config.s3Config, self.config.awsCredentials)

    def _presigner(self) -> Callable[[str], str | None]:
        s3 = self.config.s3Config
        if s3 is None:
            return lambda _key: None
        holder: list[Any] = []

        def presign(key: str) -> str | None:
            try:
                if not holder:
                    from cctv_daemon.upload.s3_client import make_client

                    holder.append(make_client(s3, self.config.awsCredentials))
                url: str = holder[0].generate_presigned_url("get_object", Params={"Bucket": s3.s3Bucket, "Key": key},
                                                            ExpiresIn=int(auth.VIDEO_URL_TTL_S))
                return url
            except Exception as exc:
                log.warning("presign_failed", error_type=type(exc).__name__)
                return None

        return presign

    def tick(self) -> None:
        pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.request_exit()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT_S)
        if self.state == "listening":
            self.state = "stopped"
            info_path(self.state_dir).unlink(missing_ok=True)
        if self._catalog is not None and not (self._thread is not None and self._thread.is_alive()):
            self._catalog.close()  # nothing serves requests any more (a SQLite catalog checkpoints its WAL)
            self._catalog = None

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "url": self.url, "port": self.port, "error": self.error,
                "event_clients": self.broker.clients}


def _quiet_server_class() -> type[Any]:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn's housekeeping loop wakes 10 times a second (a task and a timeout each time) to refresh the Date
        header; this one waits for its exit event alone, and a plain timer refreshes the Date header once a second
        (its resolution) only while a connection is open: a connection opening refreshes it at once and starts the
        timer, which stops once none is left. With no client the API's thread sleeps until one connects or
        request_exit() (its only way out: a thread has no signal handlers). Nothing else of uvicorn's on_tick
        applies here (no limit_max_requests, no callback_notify)."""

        _exit_event: asyncio.Event | None = None
        _loop: asyncio.AbstractEventLoop | None = None
        _timer: asyncio.TimerHandle | None = None

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            # Every protocol adds itself to this set on connection_made (on the loop's thread) and leaves it on
            # close; uvicorn's own shutdown reads it as a set.
            self.server_state.connections = _Connections(self._connected)

        def _refresh(self) -> None:
            """The Date header now; again in HOUSEKEEPING_S while a connection is open."""
            self.server_state.default_headers = _date_header(self.config) + self.config.encoded_headers
            if self.should_exit and self._exit_event is not None:
                self._exit_event.set()
            loop = self._loop
            self._timer = (loop.call_later(HOUSEKEEPING_S, self._refresh)
                           if loop is not None and self.server_state.connections else None)

        def _connected(self) -> None:
            if self._timer is None:  # idle until now: its Date header may be old
                self._refresh()

        async def main_loop(self) -> None:
            self._loop = asyncio.get_running_loop()
            self._exit_event = event = asyncio.Event()
            if await self.on_tick(0):  # the Date header now; exit if asked already
                return
            if self.server_state.connections:
                self._refresh()
            try:
                await event.wait()
            finally:
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None

        def request_exit(self) -> None:
            self.should_exit = True
            loop, event = self._loop, self._exit_event
            if loop is not None and event is not None:
                try:
                    loop.call_soon_threadsafe(event.set)
                except RuntimeError:
                    pass  # its loop has already closed

    return QuietServer


class _Connections(set[Any]):
    """uvicorn's set of open connections, calling `on_add` when one opens (before its first request is read)."""

    def __init__(self, on_add: Callable[[], None]) -> None:
        super().__init__()
        self._on_add = on_add

    def add(self, item: Any) -> None:
        super().add(item)
        self._on_add()


def _date_header(config: Any) -> list[tuple[bytes, bytes]]:
    return [(b"date", formatdate(time.time(), usegmt=True).encode())] if config.date_header else []


def _quiet_server(cfg: Any) -> Any:  # built on first use: uvicorn is imported only when the API is on
    return _quiet_server_class()(cfg)


def _bind(host: str, port: int) -> socket.socket:
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    if family == socket.AF_INET and not bare.replace(".", "").isdigit():
        family = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it every small response waits ~40 ms (Nagle + delayed ACK,
        # headers and body being two writes), measured in bench/api.py.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((bare, port))
        sock.listen(128)
        sock.set_inheritable(False)
    except OSError:
        sock.close()
        raise
    return sock


def _write_info(state_dir: Path, data: dict[str, Any]) -> None:
    path = info_path(state_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)
