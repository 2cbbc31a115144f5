"""The systemd notify protocol, without a dependency: datagrams of "KEY=VALUE" lines to the AF_UNIX socket
named by $NOTIFY_SOCKET ('@' = abstract namespace). EXTEND_TIMEOUT_USEC= every few seconds while the startup
recovery works (started early, before it; so a long recovery never hits TimeoutStartSec), READY=1 once every
camera has started, WATCHDOG=1 from
the main loop (so a hung loop gets the service restarted), STATUS= a one-line summary, STOPPING=1 at
shutdown. Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping

import structlog

from cctv_daemon.core.clock import Clock, SystemClock

log = structlog.get_logger("cctv_daemon.sd_notify")


def socket_address(env: Mapping[str, str]) -> str | None:
    addr = env.get("NOTIFY_SOCKET", "")
    if not addr or not (addr.startswith("/") or addr.startswith("@")):
        return None
    return "\0" + addr[1:] if addr.startswith("@") else addr


PING_EARLY_S = 0.05  # seconds: a ping this close to its time is sent


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when no watchdog is asked of us."""
    usec = env.get("WATCHDOG_USEC", "")
    wpid = env.get("WATCHDOG_PID", "")
    if wpid and wpid.isdigit() and int(wpid) != (os.getpid() if pid is None else pid):
        return None
    if not usec.isdigit() or int(usec) <= 0:
        return None
    return int(usec) / 1_000_000 / 2


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    addr = socket_address(os.environ if env is None else env)
    if addr is None or not hasattr(socket, "AF_UNIX"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | getattr(socket, "SOCK_CLOEXEC", 0)) as sock:
            sock.sendto(message.encode("utf-8"), addr)
        return True
    except OSError as exc:
        log.warning("sd_notify_failed", error=str(exc))
        return False


EXTEND_EVERY_S = 5.0
EXTEND_BY_S = 20.0  # each EXTEND_TIMEOUT_USEC gives this much more time from when it is sent


class SystemdNotifier:
    """A daemon component: watchdog pings from tick(); ready()/stopping() hooked into the daemon's life. Started
    early (before the startup recovery): until ready() it extends the start timeout from a thread of its own."""

    name = "systemd"
    starts_early = True

    def __init__(self, summary: Callable[[], str], env: Mapping[str, str] | None = None,
                 clock: Clock | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.clock = clock or SystemClock()
        self.summary = summary
        self.enabled = socket_address(self.env) is not None
        self.interval = watchdog_interval(self.env) if self.enabled else None
        self._next_ping = 0.0
        self._last_status = ""
        self._ready = False
        self._started_up = threading.Event()  # set by ready() or stopping(): the start timeout no longer applies

    def next_due(self) -> float | None:
        """When tick() must run next (monotonic): the daemon's loop sleeps no longer than that."""
        return self._next_ping if self.interval is not None else None

    def send(self, message: str) -> bool:
        return notify(message, self.env) if self.enabled else False

    def start(self) -> None:
        if self.enabled and not self._started_up.is_set():
            threading.Thread(target=self._extend_start, name="sd-extend", daemon=True).start()

    def _extend_start(self) -> None:
        message = f"EXTEND_TIMEOUT_USEC={int(EXTEND_BY_S * 1_000_000)}\nSTATUS=starting: recovering"
        while not self._started_up.is_set():
            self.send(message)
            self._started_up.wait(EXTEND_EVERY_S)

    def ready(self) -> None:
        self._started_up.set()
        self._ready = True
        self._last_status = self.summary()
        self.send(f"READY=1\nSTATUS={self._last_status}")

    def tick(self) -> None:
        if not self.enabled:
            return
        now = self.clock.monotonic()
        # A loop woken a hair before the deadline (timer rounding) pings now rather than a whole idle tick later.
        if self.interval is not None and now >= self._next_ping - PING_EARLY_S:
            self.send("WATCHDOG=1")
            self._next_ping = now + self.interval
        if self._ready:
            status = self.summary()
            if status != self._last_status:
                self._last_status = status
                self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self._started_up.set()
        self.send("STOPPING=1\nSTATUS=stopping")

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {"notify": self.enabled, "watchdog_interval_s": self.interval}
