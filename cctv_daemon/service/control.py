"""The control socket: how `cctv-daemon stop|reload|status` (and later the HTTP API's host) reach the main loop.

One request per connection, newline-delimited JSON both ways:
    -> {"cmd": "stop", "args": {}, "token": "..."}       (token only on the TCP transport)
    <- {"ok": true, "result": ...}  or  {"ok": false, "error": "..."}
Commands go through the CommandQueue (service/commands.py) and are executed by the main loop; so does `status` while
the daemon runs (the loop publishes a snapshot with every part fresh and answers with it), but when the loop does
not answer within STATUS_FRESH_WAIT_S, or while starting/stopping, it is answered from the published snapshot (no
lock; its `updated_at` tells a stuck loop).

Transports (written to {stateDir}/control.json, which clients read to find the daemon):
- unix (Linux, macOS): {stateDir}/control.sock, mode 0600 (0660 when the state folder is group-writable): the file
  system decides who may send. A path longer than sun_path allows (108 bytes on Linux, 104 on macOS) falls back to
  $XDG_RUNTIME_DIR or a private /tmp/cctv-daemon-<uid>/ folder (0700) with a name hashed from the state folder.
- tcp (Windows; forced elsewhere with CCTV_DAEMON_CONTROL=tcp): 127.0.0.1:<ephemeral port> plus a random token in
  {stateDir}/control.token (mode 0600) that every request must carry."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from cctv_daemon.core import winapi
from cctv_daemon.service.commands import CommandFailed, CommandQueue, CommandTimeout
from cctv_daemon.service.snapshot import Snapshot

log = structlog.get_logger("cctv_daemon.control")

ENDPOINT_FILENAME = "control.json"
TOKEN_FILENAME = "control.token"
SOCKET_FILENAME = "control.sock"
TRANSPORT_ENV = "CCTV_DAEMON_CONTROL"
MAX_SUN_PATH = 100  # bytes; below Linux's 108 and macOS's 104 including the NUL
MAX_REQUEST = 64 * 1024
READ_TIMEOUT_S = 5.0
ACCEPT_TIMEOUT_S = 5.0  # safety net only: stop() wakes accept() at once
MAX_CONNECTIONS = 16
STATUS_FRESH_WAIT_S = 0.5  # `status` waits this long for the main loop, then answers from the published snapshot


class ControlUnavailable(Exception):
    """No daemon answers on the control channel (none running, socket gone, not allowed to connect...)."""


def default_transport() -> str:
    forced = os.environ.get(TRANSPORT_ENV, "").strip().lower()
    if forced in ("unix", "tcp"):
        return forced
    return "unix" if hasattr(socket, "AF_UNIX") and not winapi.IS_WINDOWS else "tcp"


def endpoint_path(state_dir: Path) -> Path:
    return state_dir / ENDPOINT_FILENAME


def token_path(state_dir: Path) -> Path:
    return state_dir / TOKEN_FILENAME


def _group_shared(state_dir: Path) -> bool:
    try:
        return bool(state_dir.stat().st_mode & stat.S_IWGRP)
    except OSError:
        return False


def _private_dir(parent: Path, name: str, group: bool) -> Path | None:
    """A folder only we (and our group, when shared) can enter; None when it is not safe to use."""
    folder = parent / name
    mode = 0o710 if group else 0o700
    try:
        folder.mkdir(mode=mode, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o777 & ~mode & 0o077:
        log.warning("control_fallback_dir_unsafe", path=str(folder), reason="not ours, a link, or too open")
        return None
    return folder


def socket_path_for(state_dir: Path) -> Path:
    """{stateDir}/control.sock, or a short path when that one does not fit in sun_path."""
    preferred = state_dir / SOCKET_FILENAME
    if len(os.fsencode(str(preferred))) <= MAX_SUN_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(str(state_dir.resolve()))).hexdigest()[:16]
    group = _group_shared(state_dir)
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime).is_dir() and os.access(runtime, os.W_OK) and not group:
        candidate = Path(runtime) / f"cctv-daemon-{digest}.sock"
        if len(os.fsencode(str(candidate))) <= MAX_SUN_PATH:
            return candidate
    folder = _private_dir(Path(tempfile.gettempdir()), f"cctv-daemon-{os.getuid()}", group)
    if folder is None:
        folder = _private_dir(Path("/tmp"), f"cctv-daemon-{os.getuid()}-{digest[:6]}", group)
    if folder is None:
        raise OSError(f"no safe short folder for the control socket of {state_dir}")
    return folder / f"{digest}.sock"


def _write_private(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


@dataclass
class _Endpoint:
    transport: str
    address: str | tuple[str, int]


class ControlServer:
    """Daemon component: listens from start() (before the catalog recovery, so `status` answers early) until
    stop() (the last component stopped, so commands are answered during the whole shutdown)."""

    name = "control"
    starts_early = True  # before the startup recovery (Daemon.start_early)

    def __init__(self, state_dir: Path, commands: CommandQueue, snapshot: Callable[[], Snapshot],
                 transport: str | None = None, reply_timeout: float = 10.0) -> None:
        self.state_dir = state_dir
        self.commands = commands
        self.snapshot = snapshot
        self.transport = transport or default_transport()
        self.reply_timeout = reply_timeout
        self.endpoint: _Endpoint | None = None
        self._listener: socket.socket | None = None
        self._token = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.requests = 0
        self.refused = 0

    # -- life ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._listener is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {"pid": os.getpid(), "transport": self.transport}
        if self.transport == "unix":
            path = socket_path_for(self.state_dir)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a leftover of a killed run (we hold the instance lock for this folder)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            os.chmod(path, 0o660 if _group_shared(self.state_dir) else 0o600)  # before listen(): no window
            self.endpoint = _Endpoint("unix", str(path))
            info["path"] = str(path)
        else:
            self._token = secrets.token_hex(32)
            _write_private(token_path(self.state_dir), self._token + "\n", 0o600)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            host, port = sock.getsockname()[:2]
            self.endpoint = _Endpoint("tcp", (host, port))
            info.update(host=host, port=port)
        sock.listen(16)
        # A long timeout: accept() waking twice a second was 3 % of the daemon's CPU (docs/benchmarks.md); stop()
        # wakes it with a connection of its own, the timeout is only a safety net.
        sock.settimeout(ACCEPT_TIMEOUT_S)
        self._listener = sock
        _write_private(endpoint_path(self.state_dir), json.dumps(info) + "\n", 0o644)
        self._thread = threading.Thread(target=self._accept_loop, name="control-socket", daemon=True)
        self._thread.start()
        log.info("control_listening", transport=self.transport,
                 address=info.get("path") or f"{info.get('host')}:{info.get('port')}")

    def tick(self) -> None:
        pass

    def stop(self) -> None:
        self._stop.set()
        self._wake_accept()
        if self._thread is not None:
            self._thread.join(2)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for path in (endpoint_path(self.state_dir), token_path(self.state_dir)):
            with contextlib.suppress(OSError):
                path.unlink()
        if self.endpoint is not None and self.endpoint.transport == "unix":
            with contextlib.suppress(OSError):
                Path(str(self.endpoint.address)).unlink()

    def _wake_accept(self) -> None:
        """Connect to our own listener so that a blocked accept() returns and sees the stop flag."""
        ep = self.endpoint
        if ep is None or self._thread is None or not self._thread.is_alive():
            return
        family = socket.AF_INET if ep.transport == "tcp" else getattr(socket, "AF_UNIX", socket.AF_INET)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(ep.address)
        except OSError:
            pass  # the accept loop still leaves within ACCEPT_TIMEOUT_S

    def status(self) -> dict[str, Any]:
        addr = self.endpoint.address if self.endpoint else None
        return {"transport": self.transport, "address": addr if isinstance(addr, str) else
                (f"{addr[0]}:{addr[1]}" if addr else None), "requests": self.requests, "refused": self.refused}

    # -- serving --------------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if self._stop.is_set():  # stop()'s wake-up connection (or a late client): no more requests
                conn.close()
                return
            if not self._slots.acquire(blocking=False):
                _reply(conn, {"ok": False, "error": "busy: too many control connections"})
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), name="control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(READ_TIMEOUT_S)
            _reply(conn, self.handle(_read_line(conn)))
        except (OSError, ValueError) as exc:
            log.debug("control_connection_failed", error=str(exc))
        finally:
            conn.close()
            self._slots.release()

    def handle(self, raw: bytes) -> dict[str, Any]:
        try:
            req = json.loads(raw)
        except ValueError:
            return {"ok": False, "error": "bad request: not JSON"}
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"ok": False, "error": 'bad request: expected {"cmd": "...", "args": {...}}'}
        if self.transport == "tcp":
            token = req.get("token")
            if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._token.encode()):
                self.refused += 1
                log.warning("control_refused", reason="wrong or missing token", command=req["cmd"][:40])
                return {"ok": False, "error": "refused: wrong or missing token"}
        args = req.get("args") or {}
        if not isinstance(args, dict):
            return {"ok": False, "error": "bad request: args must be an object"}
        self.requests += 1
        cmd: str = req["cmd"]
        if cmd == "status":
            return {"ok": True, "result": self._status()}
        try:
            return {"ok": True, "result": self.commands.submit(cmd, args).wait(self.reply_timeout)}
        except CommandFailed as exc:
            return {"ok": False, "error": str(exc)}

    def _status(self) -> dict[str, Any]:
        """While the daemon runs, through the main loop (a command wakes it at once): the snapshot it publishes
        then has every part fresh (the disk and component figures are otherwise refreshed every 5 s). Starting
        (the startup recovery), stopping, or the loop busy for STATUS_FRESH_WAIT_S: the published snapshot."""
        if self.snapshot().phase == "running":
            try:
                result: dict[str, Any] = self.commands.submit("status", {}).wait(STATUS_FRESH_WAIT_S)
                return result
            except CommandFailed:  # CommandTimeout included: the loop is busy or stuck
                pass
        return self.snapshot().to_dict()


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_REQUEST:
            raise ValueError("request too long")
    return buf.split(b"\n", 1)[0]


def _reply(conn: socket.socket, data: dict[str, Any]) -> None:
    conn.sendall(json.dumps(data, default=str).encode("utf-8") + b"\n")


# -- client ---------------------------------------------------------------------------------------------------
def read_endpoint(state_dir: Path) -> dict[str, Any]:
    try:
        info = json.loads(endpoint_path(state_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ControlUnavailable(f"no control endpoint ({endpoint_path(state_dir)} missing)") from None
    except (OSError, ValueError) as exc:
        raise ControlUnavailable(f"cannot read {endpoint_path(state_dir)}: {exc}") from None
    if not isinstance(info, dict):
        raise ControlUnavailable(f"{endpoint_path(state_dir)} is not a control endpoint")
    return info


def send_command(state_dir: Path, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0,
                 pid: int | None = None, token: str | None = None) -> Any:
    """Ask the daemon recording into state_dir; its result, or raises ControlUnavailable (nobody answers on the
    channel), CommandTimeout (connected, no answer in time) or CommandFailed (refused / failed)."""
    info = read_endpoint(state_dir)
    if pid is not None and info.get("pid") != pid:
        raise ControlUnavailable(f"control endpoint is from pid {info.get('pid')}, not {pid}")
    req: dict[str, Any] = {"cmd": cmd, "args": args or {}}
    try:
        if info.get("transport") == "tcp":
            if token is None:
                try:
                    token = token_path(state_dir).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ControlUnavailable(f"cannot read the control token: {exc.strerror or exc}") from None
            req["token"] = token
            sock = socket.create_connection((str(info["host"]), int(info["port"])), timeout=timeout)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(str(info["path"]))
            except OSError:
                sock.close()
                raise
    except (OSError, KeyError, ValueError) as exc:
        raise ControlUnavailable(f"cannot connect to the control socket: {exc}") from None
    with sock:
        try:
            sock.sendall(json.dumps(req).encode("utf-8") + b"\n")
            line = _read_line(sock)
        except TimeoutError:
            raise CommandTimeout(f"{cmd}: no answer within {timeout:g} s") from None
        except (OSError, ValueError) as exc:
            raise ControlUnavailable(f"control socket failed: {exc}") from None
    if not line:
        raise ControlUnavailable("control socket closed without an answer")
    try:
        reply = json.loads(line)
    except ValueError:
        raise CommandFailed("bad answer from the daemon") from None
    if not reply.get("ok"):
        raise CommandFailed(str(reply.get("error")))
    return reply.get("result")
