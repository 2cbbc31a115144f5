"""Media made on request with ffmpeg (never touching the recorder's processes): the latest keyframe of a camera as
a JPEG, and export streams. `export_stream` is the one function the API exports through; it plans the range with
catalog/export.py (which decides what "only the asked range" means) and streams the clip catalog/export.py makes
(the range's fragments joined, no re-encode) as it is made."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from cctv_daemon.api.context import ApiContext
from cctv_daemon.catalog import export as catalog_export
from cctv_daemon.catalog.export_remote import RemoteFiles

KEYFRAME_TIMEOUT_S = 15.0
CHUNK = 64 * 1024


def latest_keyframe(ctx: ApiContext, camera: str) -> bytes | None:
    cat = ctx.catalog
    paths = cat.paths_where(camera, cat.db.t.segments.c.state == "complete", newest_first=True, limit=1)
    if not paths:
        return None
    path = cat.abs(paths[0])
    for seek in (["-sseof", "-3"], []):  # near the end first (the latest keyframe); a short segment: from the start
        args = [ctx.ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", *seek, "-skip_frame", "nokey",
                "-i", str(path), "-map", "0:v:0", "-frames:v", "1", "-f", "image2pipe", "-c:v", "mjpeg", "pipe:1"]
        try:
            proc = subprocess.run(args, capture_output=True, timeout=KEYFRAME_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0 and proc.stdout.startswith(b"\xff\xd8"):
            return proc.stdout
    return None


@dataclass
class ExportDigestState:
    sha256: str | None = None
    bytes: int = 0
    complete: bool = False


class ExportDigests:
    """The SHA-256 of recent exports (the clip is streamed before its digest is known): the last 100, by id."""

    def __init__(self, keep: int = 100) -> None:
        self._items: OrderedDict[str, ExportDigestState] = OrderedDict()
        self._lock = threading.Lock()
        self.keep = keep

    def new(self, export_id: str) -> ExportDigestState:
        state = ExportDigestState()
        with self._lock:
            self._items[export_id] = state
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
        return state

    def get(self, export_id: str) -> ExportDigestState | None:
        with self._lock:
            return self._items.get(export_id)


def plan_export(ctx: ApiContext, camera: str, start: float,
                end: float) -> tuple[catalog_export.ExportPlan, RemoteFiles]:
    """Raises catalog_export.ExportError (no footage, bad range, another node's footage not uploaded). Another
    node's uploaded segments are fetched from S3 into the returned RemoteFiles: the caller closes it (export_stream
    does, when the stream ends, fails or is abandoned)."""
    remote = RemoteFiles(ctx.download)
    try:
        p = catalog_export.plan(ctx.catalog, camera, start, end, remote)
        missing = [f for f in p.files if not f.exists()]
        if missing:
            raise catalog_export.ExportError(f"{len(missing)} segment file(s) of that range are no longer on disk")
    except BaseException:
        remote.close()
        raise
    return p, remote


def export_stream(ctx: ApiContext, p: catalog_export.ExportPlan, digest: ExportDigestState,
                  remote: RemoteFiles | None = None) -> Iterator[bytes]:
    """One MP4 of the planned range, exactly what `cctv-daemon export` writes (catalog/export.py: the range's
    fragments joined, no re-encode, nothing outside the range), streamed as it is made. The digest is filled in as
    bytes go out and marked complete when the whole clip has gone out. `remote` (segments fetched from S3) is
    removed when the stream ends, fails or is closed (the client went away), and when the stream is dropped
    without ever being started (the client left before the first byte)."""
    gen = _stream(ctx, p, digest, remote)
    if remote is not None:
        weakref.finalize(gen, remote.close)
    return gen


def _stream(ctx: ApiContext, p: catalog_export.ExportPlan, digest: ExportDigestState,
            remote: RemoteFiles | None) -> Iterator[bytes]:
    try:
        sha = hashlib.sha256()
        for chunk in catalog_export.stream(ctx.ffmpeg_exe, p):
            sha.update(chunk)
            digest.bytes += len(chunk)
            yield chunk
        digest.sha256 = sha.hexdigest()
        digest.complete = True
    finally:
        if remote is not None:
            remote.close()
