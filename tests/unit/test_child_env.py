"""The environment given to ffmpeg children (the Linux case is also tested for real in
tests/integration/test_clean_logs.py; the Windows case is a plain mapping here, no Windows API involved)."""

from __future__ import annotations

from cctv_daemon.core.child_env import ffmpeg_env

DAEMON_ENV = {"PATH": "/usr/bin", "LANG": "de_DE.UTF-8", "LC_TIME": "C", "TZ": "Europe/Berlin", "HOME": "/h",
              "GATE_PASSWORD": "pw", "AWS_SECRET_ACCESS_KEY": "k", "NOTIFY_SOCKET": "/run/n", "PYTHONPATH": "/x"}


def test_posix_keeps_only_what_ffmpeg_needs() -> None:
    assert ffmpeg_env(DAEMON_ENV, windows=False) == {
        "PATH": "/usr/bin", "LANG": "de_DE.UTF-8", "LC_TIME": "C", "TZ": "Europe/Berlin", "HOME": "/h",
        "AV_LOG_FORCE_NOCOLOR": "1"}


def test_windows_keeps_system_folders_whatever_their_case() -> None:
    env = ffmpeg_env({"Path": r"C:\\bin", "SystemRoot": r"C:\\Windows", "TEMP": r"C:\\t", "GATE_PASSWORD": "pw",
                      "windir": r"C:\\Windows"}, windows=True)
    assert env == {"Path": r"C:\\bin", "SystemRoot": r"C:\\Windows", "TEMP": r"C:\\t", "windir": r"C:\\Windows",
                   "AV_LOG_FORCE_NOCOLOR": "1"}
