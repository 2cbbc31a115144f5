"""Finding 6 (systemd part): the startup recovery ran under systemd's start timeout with nothing to extend it.
The notifier, started before the recovery, sends EXTEND_TIMEOUT_USEC until READY=1 (a real AF_UNIX socket)."""

from __future__ import annotations

import socket
from pathlib import Path

from cctv_daemon.service.sd_notify import SystemdNotifier


def test_start_timeout_is_extended_until_ready(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        n = SystemdNotifier(lambda: "1 recording", env={"NOTIFY_SOCKET": str(path)})
        assert getattr(n, "starts_early", False)  # Daemon.start_early() starts it before prepare()
        n.start()
        first = sock.recv(4096).decode()
        assert first.startswith("EXTEND_TIMEOUT_USEC=") and int(first.split("\n")[0].split("=")[1]) >= 10_000_000
        n.ready()
        msgs = [sock.recv(4096).decode()]
        sock.settimeout(6)  # longer than the extension period: nothing more comes after READY=1
        try:
            while True:
                msgs.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert any(m.startswith("READY=1") for m in msgs)
        after_ready = msgs[next(i for i, m in enumerate(msgs) if m.startswith("READY=1")):]
        assert not any(m.startswith("EXTEND_TIMEOUT_USEC") for m in after_ready)
    finally:
        sock.close()
