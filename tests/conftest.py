"""Shared fixtures: a real RTSP server (GStreamer) and a real S3 endpoint (moto_server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.media import make_h264
from tests.support.rtsp import RtspServer
from tests.support.s3 import MotoServer

RTSP_USER = "admin"
RTSP_PASSWORD = "s3cret-pass"


@pytest.fixture(scope="session")
def h264_file() -> Path:
    """10 s of 640x360 10 fps Annex-B H.264 (testsrc2, no B-frames, one keyframe per second)."""
    return make_h264(None, seconds=10, size="640x360", fps=10)


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
