"""Deleting one finished segment, durably and in the order of docs/segment-lifecycle.md:
mark the row 'deleting' (and its upload 'abandoned' unless uploaded) → unlink + fsync the folder
→ mark 'deleted' → remove empty date/camera folders. Used by retention and by the uploader
(clearAfterUpload) and the HTTP API; each deletion is published on the event bus (SegmentDeleted, with its reason
and whether footage was lost) when a publisher is wired (service/root.py)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import structlog

from cctv_daemon.catalog.disk_space import is_disk_full
from cctv_daemon.catalog.store import Catalog, SegmentRow, is_uploaded
from cctv_daemon.core.crash_hook import crash_point
from cctv_daemon.core.events import Event, SegmentDeleted
from cctv_daemon.segments import names as segment_names
from cctv_daemon.segments import staging

log = structlog.get_logger("cctv_daemon.deletion")

_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SegmentDeleter:
    def __init__(self, catalog: Catalog, publish: Callable[[Event], None] | None = None,
                 uploads_configured: bool = False) -> None:
        self.catalog = catalog
        self.publish = publish  # the event bus's publish (set by the composition root)
        self.uploads_configured = uploads_configured  # s3Config: a deletion before upload loses footage

    def delete_segment(self, rel_path: str, reason: str) -> bool:
        """Delete a catalogued segment (path relative to savePath). False when there is no live row for it
        (unknown or already deleted): files the catalog does not know are never deleted."""
        row = self.catalog.get(rel_path)
        if row is None or row.state not in ("complete", "deleting"):
            return False
        try:
            self.catalog.set_state(rel_path, "deleting", reason, abandon_upload=True)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            self._delete_on_full_disk(rel_path, reason)
            self._published(row, reason)
            return True
        crash_point("deletion.after_mark")
        self.finish(rel_path)
        self._published(row, reason)
        return True

    def _published(self, row: SegmentRow, reason: str) -> None:
        if self.publish is None:
            return
        uploaded = is_uploaded(row.upload_state)
        self.publish(SegmentDeleted(row.camera, row.path, reason, self.catalog.clock.time(), row.feed_id, row.start,
                                    row.end, row.size, uploaded, self.uploads_configured and not uploaded))

    def _delete_on_full_disk(self, rel_path: str, reason: str) -> None:
        """The disk is full to the last byte (the space reserve is gone too): the catalog cannot even record the
        intent. Free the file's blocks first, then record the deletion. A crash in between leaves a 'complete' row
        without its file, which `check --repair` marks missing; never a file that nothing knows about."""
        path = segment_names.abs_file(self.catalog.save_path, rel_path)
        log.warning("deletion_on_full_disk", path=rel_path, detail="file removed before its row is marked")
        _unlink_durably(path)
        self.catalog.set_state(rel_path, "deleted", reason, abandon_upload=True)
        remove_empty_dirs(os.path.dirname(path), self.catalog.save_path, self.catalog.clock.time())

    def finish(self, rel_path: str) -> None:
        """Steps after the 'deleting' mark; also what startup recovery runs for a crashed deletion."""
        # Plain str paths: a Path per deleted segment would intern its name (see core/events.py FinishedSegment).
        path = segment_names.abs_file(self.catalog.save_path, rel_path)
        _unlink_durably(path)
        crash_point("deletion.after_unlink")
        self.catalog.set_state(rel_path, "deleted")
        remove_empty_dirs(os.path.dirname(path), self.catalog.save_path, self.catalog.clock.time())

    def finish_all(self) -> int:
        """Startup: finish every deletion a crash interrupted."""
        pending = self.catalog.rows_in_state("deleting")
        for rel_path, _at in pending:
            self.finish(rel_path)
        if pending:
            log.warning("deletions_finished_after_crash", count=len(pending))
        return len(pending)


def remove_empty_dirs(date_dir: Path | str, save_path: Path, now: float | None = None) -> None:
    """Remove a date folder of ours (YYYY-MM-DD under a camera folder) if empty, then its camera folder if
    empty. rmdir only removes empty folders, so nothing that is not ours can be lost. With `now`, folders of
    today and yesterday (UTC) are kept: the finisher may be about to move a segment into them (another
    thread)."""
    date_dir = os.path.normpath(date_dir)
    cam_dir = os.path.dirname(date_dir)
    name = os.path.basename(date_dir)
    if (os.path.normcase(os.path.dirname(cam_dir)) != os.path.normcase(os.path.normpath(save_path))
            or not _DATE_DIR.match(name)):
        return
    if now is not None and name >= segment_names.date_dir(now - 86400):
        return
    for d in (date_dir, cam_dir):
        try:
            os.rmdir(d)
        except OSError:
            return  # not empty (or already gone)
        log.debug("empty_folder_removed", path=d)
    if os.name == "posix":
        staging.fsync_dir(save_path)


def _unlink_durably(path: str) -> None:
    """Remove the file (gone already is fine) and make its removal durable (its folder fsynced)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    staging.fsync_dir(os.path.dirname(path))
