"""Is an unreachable camera back? A cheap, non-blocking TCP connect to its RTSP port during the backoff wait.

The camera's state machine asks `poll()` on every tick while it waits; at most one connect is in flight, one is
started every PROBE_INTERVAL_S, and none ever blocks (non-blocking socket, checked with a zero-timeout select).
`due()` says when the next poll has work, so the main loop ticks then rather than at its idle period (a probe
polled once a second took up to 2 s to see a camera back: one tick to start the connect, one to settle it).
A probe carries no credentials (it sends nothing), so it can never lock an account. `poll()` answers True once
it has seen the port refuse (or time out) and then accept: the camera has come back.
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from cctv_daemon.core.clock import Clock

PROBE_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 1.0
SETTLE_CHECKS_S = (0.05, 0.25)  # an in-flight connect is looked at this long after it started, then at its timeout
DEFAULT_RTSP_PORT = 554

Connector = Callable[[tuple[str, int]], socket.socket | bool]


def rtsp_target(url: str) -> tuple[str, int] | None:
    """(ip, port) of an RTSP URL whose host is an IP literal (a name would need a blocking DNS lookup)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or DEFAULT_RTSP_PORT
    except ValueError:
        return None
    if parts.scheme not in ("rtsp", "rtsps") or not host:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host, port


def start_connect(target: tuple[str, int]) -> socket.socket | bool:
    """Start a non-blocking connect: the socket while in progress, True/False when settled at once."""
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex(target)
    if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, getattr(errno, "WSAEWOULDBLOCK", -1)):
        return sock
    sock.close()
    return err == 0


class ReachProbe:
    def __init__(self, target: tuple[str, int], clock: Clock, connect: Connector = start_connect,
                 seen_down: bool = False) -> None:
        """`seen_down`: the failure that started the wait already showed the camera unreachable (connection
        refused), so the first accepted connect means it is back (it may return before the first probe)."""
        self.target = target
        self.clock = clock
        self._connect = connect
        self._sock: socket.socket | None = None
        self._sent_at = 0.0
        self._next_at = 0.0
        self.seen_down = seen_down
        self.probes = 0

    def poll(self) -> bool:
        """Advance the probe; True when the camera was seen unreachable and now accepts connections."""
        now = self.clock.monotonic()
        result: bool | None = None
        if self._sock is not None:
            result = self._settle(now)
        elif now >= self._next_at:
            self._next_at = now + PROBE_INTERVAL_S
            self.probes += 1
            try:
                started = self._connect(self.target)
            except OSError:
                started = False
            if isinstance(started, bool):
                result = started
            else:
                self._sock, self._sent_at = started, now
        if result is None:
            return False
        if not result:
            self.seen_down = True
            return False
        return self.seen_down

    def due(self) -> float:
        """Monotonic time at which `poll()` next has something to do: the next look at the connect in flight
        (a refusal or an accept on a LAN settles within milliseconds), else the next probe."""
        if self._sock is None:
            return self._next_at
        elapsed = self.clock.monotonic() - self._sent_at
        after = next((s for s in SETTLE_CHECKS_S if s > elapsed), PROBE_TIMEOUT_S)
        return self._sent_at + after

    def _settle(self, now: float) -> bool | None:
        sock = self._sock
        assert sock is not None
        try:
            _, writable, _ = select.select([], [sock], [], 0)
        except (OSError, ValueError):
            writable = [sock]
        if not writable:
            if now - self._sent_at < PROBE_TIMEOUT_S:
                return None
            ok = False  # silent: a host that is down drops the SYN
        else:
            ok = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        self.close()
        return ok

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
