"""How the daemon starts its ffmpegs (recording/process_control.py): a process group of their own in the daemon's
session (a Ctrl-C to the daemon's group never reaches them; not a session of their own, which the kernel's
autogroup scheduling made cost more CPU), and on Linux they get SIGTERM when the daemon dies. Real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cctv_daemon.recording import process_control
from tests.support.daemon import wait_for

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and sessions are POSIX")

# A parent (standing in for the daemon) that starts `sleep` as the daemon starts ffmpeg, prints its pid, and waits.
PARENT = """
import signal, subprocess, sys, time
from cctv_daemon.recording.process_control import spawn_kwargs
child = subprocess.Popen(["sleep", "60"], **spawn_kwargs())
signal.signal(signal.SIGINT, lambda *_: print("sigint", flush=True))  # the daemon handles it, and lives on
print(child.pid, flush=True)
while True:
    time.sleep(1)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _parent() -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True,
                              start_new_session=True, cwd=Path(__file__).parents[2])
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


def _stop(parent: subprocess.Popen[str], child: int) -> None:
    for pid in (child, parent.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    parent.wait(10)


def test_child_has_its_own_process_group_in_the_parents_session() -> None:
    child = subprocess.Popen(["sleep", "30"], **process_control.spawn_kwargs())
    try:
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        assert os.getsid(child.pid) == os.getsid(0)  # not a session (an autogroup) of its own
    finally:
        child.kill()
        child.wait()


def test_a_ctrl_c_to_the_daemons_group_does_not_reach_the_child() -> None:
    parent, child = _parent()
    try:
        os.killpg(parent.pid, signal.SIGINT)  # what the terminal does on Ctrl-C: the foreground group
        assert parent.stdout is not None and parent.stdout.readline().strip() == "sigint"  # the daemon got it
        time.sleep(0.3)
        assert _alive(child), "the child got the daemon's Ctrl-C"
    finally:
        _stop(parent, child)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_child_gets_sigterm_when_the_daemon_is_killed() -> None:
    parent, child = _parent()
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: not _alive(child), 10, "the child to end after its parent's death")
    finally:
        _stop(parent, child)
