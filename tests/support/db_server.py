"""The common part of the throwaway database servers (tests/support/databases.py): a server process in its own
temp dir, run as its package's system user when we are root, stopped/killed/started again with its data kept
(`Outage`), and the reaping of servers left by a killed test run."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn
from urllib.parse import quote

from tests.support import procs
from tests.support.rtsp import free_port

TEST_USER = "cctv"
TEST_DATABASE = "cctv"


class Unavailable(RuntimeError):
    """The server's binaries (or its Python driver) are not installed: the fixture skips with this reason."""


OWNER_FILE = "owner.pid"  # the pid of the test process that made a server's dir


def reap_leftovers(kind: str) -> list[Path]:
    """Servers left by a test process that was killed (no teardown ran): stop every process running from a
    ``cctv-{kind}-*`` temp dir whose owner process is gone, and delete the dir. Returns the dirs removed. Only
    processes whose command line names such a dir are touched."""
    import psutil

    removed = []
    for d in Path(tempfile.gettempdir()).glob(f"cctv-{kind}-*"):
        try:
            owner = int((d / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if psutil.pid_exists(owner):
            continue
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(str(d) in arg for arg in p.info["cmdline"] or []):
                    p.kill()
                    p.wait(10)
            except (psutil.Error, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


class Outage(threading.Thread):
    """Stops a server, keeps it down for ``seconds``, starts it again (same port, same data). ``join()`` raises
    what went wrong; ``down_at``/``up_at`` are the monotonic times the server stopped and answered again."""

    def __init__(self, server: DatabaseServer, seconds: float, crash: bool) -> None:
        super().__init__(name=f"{server.kind}-outage", daemon=True)
        self.server, self.seconds, self.crash = server, seconds, crash
        self.down_at: float | None = None
        self.up_at: float | None = None
        self.error: BaseException | None = None
        self.is_down = threading.Event()

    def run(self) -> None:
        try:
            self.server.kill() if self.crash else self.server.stop()
            self.down_at = time.monotonic()
            self.is_down.set()
            time.sleep(self.seconds)  # the outage itself: its length is the point, nothing is being waited on
            self.server.start()
            self.up_at = time.monotonic()
        except BaseException as exc:
            self.error = exc
            self.is_down.set()

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout if timeout is not None else self.seconds + 120)
        if self.is_alive():
            raise AssertionError(f"{self.server.kind} outage did not end")
        if self.error is not None:
            raise self.error


class DatabaseServer(ABC):
    """One throwaway server. ``start()`` (first time: creates the data dir, the database and the user),
    ``stop()`` (graceful, data kept), ``kill()`` (SIGKILL, a crash), ``start()`` again, ``close()`` (stop and
    delete everything)."""

    kind = "database"
    service_user = ""  # the OS user the server runs as when we are root

    def __init__(self, ready_timeout: float = 60.0) -> None:
        self.port = free_port()
        self.user = TEST_USER
        self.database = TEST_DATABASE
        self.password = secrets.token_hex(12)
        self.ready_timeout = ready_timeout
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None  # the last start(), including initialisation the first time
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} port={self.port} dir={self.dir} running={self.running}>"

    # -- what the subclasses provide --
    @property
    @abstractmethod
    def scheme(self) -> str: ...

    @abstractmethod
    def _check_available(self) -> None: ...

    @abstractmethod
    def _initialise(self) -> None:
        """Create the data dir under ``self.dir`` (runs once, before the first launch)."""

    @abstractmethod
    def _command(self) -> list[str]: ...

    @abstractmethod
    def _answers(self) -> bool:
        """True once the server accepts an administrator connection on its socket."""

    @abstractmethod
    def _create_account(self) -> None:
        """Create the test user (with ``self.password``) and database ``self.database``."""

    @abstractmethod
    def create_database(self, name: str) -> str:
        """A new empty database that the test user owns; returns its URL."""

    @abstractmethod
    def connect(self, database: str | None = None) -> Any:
        """A DB-API connection as the test user over TCP (psycopg / PyMySQL)."""

    # -- common --
    def url_for(self, database: str) -> str:
        return f"{self.scheme}://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the test database (contains the password: do not print it)."""
        return self.url_for(self.database)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def socket_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "sock"

    def start(self) -> DatabaseServer:
        if self.running:
            raise RuntimeError(f"{self.kind} already running (pid {self.proc.pid if self.proc else '?'})")
        self._check_available()
        started = time.monotonic()
        first = self.dir is None
        if first:
            reap_leftovers(self.kind)
            self.dir = Path(tempfile.mkdtemp(prefix=f"cctv-{self.kind}-"))
            (self.dir / OWNER_FILE).write_text(str(os.getpid()))
            self.socket_dir.mkdir()
            self._log = tempfile.TemporaryFile(prefix=f"cctv-{self.kind}-log-")  # noqa: SIM115 (close())
            self._hand_over(self.dir)
            self._initialise()
        self.proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, **self._as_service_user())
        self._wait_ready()
        if first:
            self._create_account()
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """Graceful shutdown (PostgreSQL: fast shutdown; MariaDB: SIGTERM); the data stays."""
        return None if self.proc is None else procs.stop(self.proc, timeout, self._stop_signal())

    def kill(self) -> int | None:
        """SIGKILL: the server crashes; it recovers its data at the next start()."""
        return None if self.proc is None else procs.kill(self.proc, 30)

    def outage(self, seconds: float = 30.0, *, crash: bool = False) -> Outage:
        """Start an outage in the background: the server stops (or is killed), stays down ``seconds``, comes back
        with its data. Wait for it with ``outage.join()``."""
        outage = Outage(self, seconds, crash)
        outage.start()
        outage.is_down.wait(60)
        return outage

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.kill()
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
            if self._log is not None:
                self._log.close()
                self._log = None

    def log_text(self) -> str:
        """The server's output, the password replaced by ``***``."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace").replace(self.password, "***")

    def _stop_signal(self) -> int:
        return signal.SIGTERM

    def _run(self, argv: list[str], what: str, timeout: float = 120) -> None:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False,
                              **self._as_service_user())
        if done.returncode != 0:
            out = (done.stdout + done.stderr).decode(errors="replace").replace(self.password, "***")
            raise RuntimeError(f"{self.kind}: {what} failed (exit {done.returncode}):\n{out[-4000:]}")

    def _as_service_user(self) -> dict[str, Any]:
        assert self.dir is not None
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": str(self.dir), "TZ": "UTC"}
        if os.geteuid() != 0:
            return {"env": env}
        entry = self._service_pw()
        return {"env": env, "user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": str(self.dir)}

    def _service_pw(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.service_user)
        except KeyError:
            raise Unavailable(f"running as root, and there is no '{self.service_user}' user to run "
                              f"{self.kind} as (its Debian package creates it)") from None

    def _hand_over(self, path: Path) -> None:
        """As root, the temp dir belongs to the service user (the server writes its data and socket there)."""
        if os.geteuid() == 0:
            entry = self._service_pw()
            for p in [path, *path.rglob("*")]:
                os.chown(p, entry.pw_uid, entry.pw_gid)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.02
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                self._fail(f"exited ({self.proc.returncode}) before accepting connections")
            if self._answers():
                return
            if time.monotonic() >= deadline:
                self._fail(f"did not accept connections within {self.ready_timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def _fail(self, why: str) -> NoReturn:
        self.kill()
        raise RuntimeError(f"{self.kind} {why} (port {self.port})\nlog:\n{self.log_text()[-4000:]}")

    def __enter__(self) -> DatabaseServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
