"""Footage of another node in an export (a shared catalog): its segments are read from S3 when their upload is
verified. Only the range's segments are fetched, into a private temporary folder (mode 0700) that `close()`
removes (the CLI: when the export is written or fails; the API: when the stream ends, fails or the client goes
away). A segment of another node that is not uploaded cannot be exported here: `HeldElsewhere` names its node(s).
Errors name the segment and the S3 error code, never a credential."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import structlog

from cctv_daemon.catalog.rows import SegmentRow

if TYPE_CHECKING:
    from cctv_daemon.catalog.store import Catalog

log = structlog.get_logger("cctv_daemon.catalog.export")

Download = Callable[[str, Path], None]  # (S3 key, destination file): raises on failure
PARALLEL = 4  # segments are small: a few GETs at once
SPARE_BYTES = 64 << 20  # left free on the temporary folder's disk


class FetchError(Exception):
    pass


def describe(exc: BaseException) -> str:
    """An S3 failure without anything secret: botocore's error code (NoSuchKey, AccessDenied, ...) or the
    exception's type."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return str(code) if code else type(exc).__name__


class RemoteFiles:
    """Segments fetched from S3 for one export; a context manager (close() removes the folder, idempotent)."""

    def __init__(self, download: Download | None, parent: Path | None = None) -> None:
        self.download = download
        self.parent = parent
        self.folder: Path | None = None
        self.fetched = 0
        self.bytes = 0

    def __enter__(self) -> RemoteFiles:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def fetch(self, wanted: list[tuple[SegmentRow, str]]) -> dict[SegmentRow, Path]:
        """(row, S3 key) -> where its object now is. Raises FetchError (nothing configured, no space, an object that
        cannot be read or whose size differs from the catalogued one)."""
        if not wanted:
            return {}
        if self.download is None:
            raise FetchError("no s3Config: footage of other nodes cannot be read from S3 here")
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix=".cctv-export-s3-", dir=self.parent))  # mode 0700
        need = sum(r.size for r, _k in wanted)
        free = shutil.disk_usage(self.folder).free
        if need + SPARE_BYTES > free:
            raise FetchError(f"the range's {len(wanted)} segment(s) from S3 need {need / 1e6:.0f} MB; "
                             f"{self.folder.parent} has {free / 1e6:.0f} MB free")
        dests = {row: self.folder / f"{i:06d}_{PurePosixPath(row.path).name}" for i, (row, _k) in enumerate(wanted)}
        download = self.download

        def one(item: tuple[SegmentRow, str]) -> None:
            row, key = item
            try:
                download(key, dests[row])
            except Exception as exc:
                raise FetchError(f"cannot read segment {row.path} of node {row.node_id} from S3 (key {key}): "
                                 f"{describe(exc)}") from None
            size = dests[row].stat().st_size
            if size != row.size:
                raise FetchError(f"the S3 object {key} of segment {row.path} has {size} bytes, the catalog says "
                                 f"{row.size}")

        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(wanted)), thread_name_prefix="export-s3") as pool:
            list(pool.map(one, wanted))  # the first failure is raised (the others finish first)
        self.fetched += len(wanted)
        self.bytes += need
        log.info("export_fetched_from_s3", segments=len(wanted), bytes=need,
                 nodes=sorted({r.node_id for r, _k in wanted}))
        return dests


class HeldElsewhere(Exception):
    def __init__(self, nodes: list[str]) -> None:
        super().__init__(", ".join(nodes))
        self.nodes = nodes


def elsewhere(catalog: Catalog, row: SegmentRow) -> bool:
    """Another node's row (a shared catalog; a SQLite catalog is single-node: every row is its own)."""
    return catalog.db.scoped and bool(row.node_id) and row.node_id != catalog.node_id


def rows(catalog: Catalog, camera: str, start: float, end: float) -> list[SegmentRow]:
    """The range's segments: complete ones, and another node's removed there after its verified upload (in S3)."""
    return [r for r in catalog.segments(camera=camera, start=start, end=end, states=("complete", "deleted"))
            if r.state == "complete" or (r.upload_state == "uploaded" and elsewhere(catalog, r))]


def locate(catalog: Catalog, wanted: list[SegmentRow], remote: RemoteFiles | None) -> list[Path]:
    """Where each row's file is read from: this node's on disk, another node's from S3 (fetched now). Raises
    HeldElsewhere (another node's segment not uploaded: its node named) or FetchError."""
    others = [r for r in wanted if elsewhere(catalog, r)]
    keys = catalog.uploaded_keys(others) if others else {}
    held = sorted({r.node_id for r in others if (r.path, r.node_id) not in keys})
    if held:
        raise HeldElsewhere(held)
    if others and (remote is None or remote.download is None):
        raise FetchError(f"footage of node(s) {', '.join(sorted({r.node_id for r in others}))} in that range is "
                         "in S3, but there is no s3Config here to read it: add it, or export it on that node")
    fetched = remote.fetch([(r, keys[(r.path, r.node_id)]) for r in others]) if remote and others else {}
    return [fetched[r] if r in fetched else catalog.abs(r.path) for r in wanted]
