"""A real S3 endpoint for tests: ``moto_server`` in a subprocess (kill it for an outage, start it again)."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, NoReturn

from tests.support import procs
from tests.support.rtsp import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def moto_server_exe() -> str:
    """``moto_server`` next to the running interpreter (the venv's bin/)."""
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        raise RuntimeError(f"moto_server not found at {exe}; pip install 'moto[server]'")
    return str(exe)


class MotoServer:
    """``moto_server -H 127.0.0.1 -p PORT``; state lives in the process and is lost on kill()."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", ready_timeout: float = 20.0) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        # No port asked for: the first start lets moto_server bind port 0 and reads the port it got, so parallel
        # test processes (pytest -n) never race for a port that free_port() saw free; restarts keep that port.
        self._learn_port = port is None
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> MotoServer:
        """Start (again, on the same port) and wait until it answers HTTP."""
        if self.running:
            raise RuntimeError(f"moto_server already running (pid {self.pid})")
        self._close_log()
        self._log = tempfile.TemporaryFile(prefix="moto-server-")  # noqa: SIM115 (closed in close())
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        started = time.monotonic()
        deadline = started + self.ready_timeout
        learn = self._learn_port
        self.proc = subprocess.Popen(
            [moto_server_exe(), "-H", self.host, "-p", "0" if learn else str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        delay = 0.02
        while True:
            if self.proc.poll() is not None:
                self._fail("exited before answering HTTP")
            if learn and (found := re.search(rb"Running on http://[^:/]+:(\d+)", self._log_bytes())):
                self.port, learn, self._learn_port = int(found.group(1)), False, False
            if not learn and self._answers():
                break
            if time.monotonic() >= deadline:
                self._fail(f"did not answer HTTP within {self.ready_timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)
        self.startup_seconds = time.monotonic() - started
        return self

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=1.0)
        try:
            conn.request("GET", "/moto-api/data.json")
            return conn.getresponse().status < 500
        except OSError:
            return False
        finally:
            conn.close()

    def reset(self) -> None:
        """Clear all state (``POST /moto-api/reset``)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5.0)
        try:
            conn.request("POST", "/moto-api/reset")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"moto reset failed: HTTP {response.status}")
        finally:
            conn.close()

    def kill(self) -> int | None:
        """SIGKILL and wait: an S3 outage (all state lost)."""
        return None if self.proc is None else procs.kill(self.proc, 10)

    def stop(self, timeout: float = 5.0) -> int | None:
        return None if self.proc is None else procs.stop(self.proc, timeout)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.running:
                self.kill()
            self._close_log()

    def log_text(self) -> str:
        return self._log_bytes().decode(errors="replace")

    def _log_bytes(self) -> bytes:
        if self._log is None:
            return b""
        self._log.seek(0)
        return self._log.read()

    def client(self, **config: Any) -> S3Client:
        return client(self.endpoint, **config)

    def _fail(self, why: str) -> NoReturn:
        self.kill()
        raise RuntimeError(f"moto_server {why} (port {self.port})\nlog:\n{self.log_text()}")

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def client(endpoint: str | MotoServer, **config: Any) -> S3Client:
    """A boto3 S3 client for a moto endpoint (dummy credentials, us-east-1, few quick retries).

    ``config`` is passed to ``botocore.config.Config`` (e.g. ``connect_timeout=1``).
    """
    import boto3
    from botocore.config import Config

    url = endpoint.endpoint if isinstance(endpoint, MotoServer) else endpoint
    options: dict[str, Any] = {
        "connect_timeout": 2,
        "read_timeout": 10,
        "retries": {"max_attempts": 2, "mode": "standard"},
    }
    options.update(config)
    s3: S3Client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(**options),
    )
    return s3
