"""Run the real daemon (`python -m cctv_daemon run`) as a subprocess for upload tests; read its state."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, save: Path, s3: dict[str, Any] | None, *, creds: tuple[str, str] | None = None,
                 storage: dict[str, Any] | None = None, video_duration: int = 1) -> Path:
    data: dict[str, Any] = {
        "cameras": [{"cameraName": "t1", "source": "test", "videoDuration": video_duration}],
        "storageConfig": {"savePath": str(save), **(storage or {})},
        "logging": {"level": "info"},
    }
    if s3 is not None:
        data["s3Config"] = s3
    if creds is not None:
        data["awsCredentials"] = {"accessKeyId": creds[0], "secretAccessKey": creds[1], "region": "us-east-1"}
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path


class DaemonProc:
    def __init__(self, config: Path, out: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.out_path = out
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> DaemonProc:
        self._out = self.out_path.open("ab")
        env = dict(os.environ, PYTHONPATH=str(REPO), **self.env)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(k, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cctv_daemon", "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
            start_new_session=True,
        )
        return self

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._close()
        return rc

    def kill(self) -> None:
        """SIGKILL the daemon and its ffmpeg children (its whole session)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        self._close()

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def log_text(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and ev.get("event") == name:
                out.append(ev)
        return out


def upload_rows(save: Path) -> list[dict[str, Any]]:
    db = save / ".cctv" / "catalog.sqlite3"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM uploads ORDER BY start")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def local_segments(save: Path, camera: str = "t1") -> list[Path]:
    return sorted((save / camera).rglob("*.mp4")) if (save / camera).exists() else []


def bucket_objects(s3: Any, bucket: str) -> dict[str, int]:
    keys: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            keys[obj["Key"]] = obj["Size"]
    return keys
