"""Shared fixtures: a real RTSP server (GStreamer), a real S3 endpoint (moto_server), real PostgreSQL and MariaDB
servers (session-wide), and the daemons under test (`daemon_factory`: the only way tests start `cctv-daemon run`)."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.support import databases, old_ffmpeg
from tests.support.daemon import DaemonProc
from tests.support.media import make_h264
from tests.support.rtsp import RtspServer
from tests.support.s3 import MotoServer

RTSP_USER = "admin"
RTSP_PASSWORD = "s3cret-pass"
_DAEMONS = pytest.StashKey[list[DaemonProc]]()


@pytest.fixture(scope="session")
def h264_file() -> Path:
    """10 s of 640x360 10 fps Annex-B H.264 (testsrc2, no B-frames, one keyframe per second)."""
    return make_h264(None, seconds=10, size="640x360", fps=10)


@pytest.fixture(scope="session")
def ffmpeg_4_2_2() -> Path:
    """A real static ffmpeg 4.2.2 (too old for the daemon), from the imageio-ffmpeg 0.4.3 wheel on PyPI."""
    try:
        return old_ffmpeg.ffmpeg_4_2_2()
    except old_ffmpeg.Unavailable as exc:
        pytest.skip(f"no ffmpeg 4.2.2 to test with: {exc}")


@pytest.fixture
def rtsp_server(h264_file: Path) -> Iterator[RtspServer]:
    """RTSP server with /cam1../cam4 (H.264) and /audio (H.264 + PCMU); basic auth admin / s3cret-pass."""
    mounts: dict[str, tuple[str, str | Path]] = {f"/cam{i}": ("video", h264_file) for i in range(1, 5)}
    mounts["/audio"] = ("video+pcmu", h264_file)
    server = RtspServer(mounts, user=RTSP_USER, password=RTSP_PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def moto_server() -> Iterator[MotoServer]:
    """A fresh moto_server (S3) on its own port; ``.client()`` gives a boto3 S3 client."""
    server = MotoServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[databases.DatabaseServer]:
    """A throwaway PostgreSQL for the whole session (tests/support/databases.py); ``.url`` is its SQLAlchemy
    URL (``postgresql+psycopg://cctv:…@127.0.0.1:PORT/cctv``), ``.create_database(name)`` gives a fresh one.
    Do not take it down here: use your own `PostgresServer` for outages."""
    yield from databases.serve(databases.PostgresServer)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[databases.DatabaseServer]:
    """A throwaway MariaDB for the whole session; ``.url`` is ``mysql+pymysql://cctv:…@127.0.0.1:PORT/cctv``."""
    yield from databases.serve(databases.MariaDBServer)


CATALOG_BACKENDS = ("sqlite", "postgresql", "mariadb")


@pytest.fixture(params=CATALOG_BACKENDS)
def catalog_url(request: pytest.FixtureRequest) -> str | None:
    """Each catalog test once per backend: None (the default SQLite file), then a fresh PostgreSQL and a fresh
    MariaDB database on the session's servers (started only when such a test runs)."""
    if request.param == "sqlite":
        return None
    server: databases.DatabaseServer = request.getfixturevalue(
        "postgres_server" if request.param == "postgresql" else "mariadb_server")
    return server.create_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(scope="session")
def postgres_url(postgres_server: databases.DatabaseServer) -> str:
    return postgres_server.url


@pytest.fixture(scope="session")
def mariadb_url(mariadb_server: databases.DatabaseServer) -> str:
    return mariadb_server.url


class DaemonFactory(Protocol):
    def __call__(self, config: dict[str, Any], env: dict[str, str] | None = None, *,
                 start: bool = True, name: str | None = None) -> DaemonProc: ...


@pytest.fixture
def daemon_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DaemonFactory]:
    """``daemon_factory(config, env=None, start=True, name=None)`` writes ``config`` to ``tmp_path/config.json``
    (``tmp_path/NAME/config.json`` with a name; savePath defaults to ``rec`` beside it) and gives a `DaemonProc`,
    started unless ``start=False``. At teardown every daemon is stopped (SIGTERM, SIGKILL after 15 s) and no
    ffmpeg of it is left; if the test failed, the report
    shows each daemon's output."""
    made = request.node.stash.setdefault(_DAEMONS, [])

    def make(config: dict[str, Any], env: dict[str, str] | None = None, *, start: bool = True,
             name: str | None = None) -> DaemonProc:
        home = tmp_path if name is None else tmp_path / name  # several daemons of a test: one folder each
        home.mkdir(exist_ok=True)
        d = DaemonProc(home, config, env)
        made.append(d)
        return d.start() if start else d

    yield make
    for d in made:
        d.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failed test's report carries the output of the daemons it started (`daemon_factory`)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed and report.when != "setup":
        daemons: list[DaemonProc] = item.stash.get(_DAEMONS, [])
        for i, d in enumerate(daemons):
            if d.out_paths:
                report.sections.append((f"daemon {i + 1} output ({report.when})", d.log_tail()))
