"""A segment's life from ffmpeg's staging folder to its final, named place, and the startup recovery of
segments a crash left behind. See docs/segment-lifecycle.md for the order of steps and what is durable when."""

from __future__ import annotations

import errno
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog

from cctv_daemon.core.clock import Clock
from cctv_daemon.core.events import FinishedSegment, SegmentBus
from cctv_daemon.segments import durable, staging
from cctv_daemon.segments import names as segment_names
from cctv_daemon.segments.media_probe import probe_duration
from cctv_daemon.segments.mp4_tail import check_tail, truncate_incomplete_tail
from cctv_daemon.segments.timeline import FIRST_OF_RUN_MAX_S, CameraTimeline
from cctv_daemon.segments.watcher import StagedSegment, _ListReader

log = structlog.get_logger("cctv_daemon.segment")


@dataclass(slots=True)
class _Ready:
    """A segment named and placed, not yet moved: its staging file, its event, and what only its log line says."""

    src: str
    seg: FinishedSegment
    media_start: float
    clamped: bool


class SegmentFinisher:
    def __init__(
        self, save_path: Path, state_dir: Path, ffmpeg_exe: str, bus: SegmentBus, clock: Clock
    ) -> None:
        self.save_path = save_path
        self._save_dir = os.fspath(save_path)
        self.state_dir = state_dir
        self.spool = staging.spool_dir(save_path)  # savePath's filesystem: the hand-off is one rename
        self.root = staging.staging_root(self.spool)
        # Before staging moved to savePath's filesystem it lived in {stateDir}/staging: recovered too.
        legacy = staging.staging_root(state_dir)
        self.legacy_root = legacy if legacy != self.root else None
        self.ffmpeg_exe = ffmpeg_exe
        self.bus = bus
        self.clock = clock
        self._meta: dict[tuple[str, str], staging.RunMeta] = {}
        self._timelines: dict[str, CameraTimeline] = {}

    # -- normal path: ffmpeg listed the segment as closed --------------------------------------------
    def finish(self, staged: StagedSegment, recovered: bool = False, media_duration: float | None = None,
               closed_at: float | None = None) -> FinishedSegment | None:
        ready = self._prepare(staged, recovered, media_duration, closed_at, set())
        done = self._complete([ready]) if ready is not None else []
        return done[0] if done else None

    def finish_batch(self, batch: list[StagedSegment]) -> list[FinishedSegment]:
        """Segments that closed close together (the hand-off gathers them, segments/handoff.py), in order: each
        is named, then their data is flushed together (one syncfs per file system), they are renamed, the renames
        are made durable together (one more syncfs), and each is published. Same order per segment as finish()."""
        taken: set[str] = set()
        ready: list[_Ready] = []
        for staged in batch:
            try:
                r = self._prepare(staged, False, None, None, taken)
            except Exception:
                log.exception("segment_handoff_failed", item=str(staged))
                continue
            if r is not None:
                ready.append(r)
        return self._complete(ready)

    def _prepare(self, staged: StagedSegment, recovered: bool, media_duration: float | None,
                 closed_at: float | None, taken: set[str]) -> _Ready | None:
        """The segment's tail checked, its place in the camera's timeline and its final name: nothing moved yet."""
        # Plain str paths (os.path) from here to the bus: a Path per segment name would intern it (see
        # core/events.py FinishedSegment).
        src = staged.file
        try:
            if staged.seen is None and closed_at is None:
                # Read late (recovery, safety-net poll): the file's last write happened when it closed.
                closed_at = os.stat(src).st_mtime
            removed, fragments, size = check_tail(src)  # also the look for the file (no stat of its own)
        except FileNotFoundError:
            log.debug("segment_already_handled", camera=staged.camera, staging=src)
            return None
        meta = self._run_meta(os.path.dirname(src), staged.run_id, staged.camera,
                              fresh=staged.start_s < FIRST_OF_RUN_MAX_S)
        media = staged.end_s - staged.start_s if media_duration is None else media_duration
        timeline = self.timeline(meta.camera)
        if staged.seen is not None:
            timeline.check_step(staged.seen)
            end = staged.seen.wall
        else:
            assert closed_at is not None
            end = closed_at
        if removed:
            log.warning("incomplete_fragment_dropped", camera=meta.camera, staging=src, bytes=removed)
        if fragments == 0:
            self._quarantine(Path(src), "segment holds no complete fragment")
            return None
        placed = timeline.place(staged.run_id, staged.start_s, end, media, meta.anchor)
        start, end = placed.start, placed.end
        dest = self._free_dest(
            segment_names.final_file(self._save_dir, meta.camera, meta.feed_id, start, end), taken
        )
        taken.add(dest)
        seg = FinishedSegment(meta.camera, meta.feed_id, dest, start, end, size, staged.run_id, recovered,
                              round(media, 3))
        return _Ready(src, seg, staged.start_s, placed.clamped)

    def _complete(self, ready: list[_Ready]) -> list[FinishedSegment]:
        """Durable before catalogued (docs/segment-lifecycle.md, step 3): the data, then the final names, then
        the rows. A segment whose data or rename cannot be made durable stays where it is, unpublished."""
        if not ready:
            return []
        failed = durable.flush_all([r.src for r in ready], fsync_file)
        folders: dict[str, None] = {}  # both folders of every rename, in order, once each
        moved: list[_Ready] = []
        for r in ready:
            error = failed.get(r.src)
            if error is None:
                try:
                    _rename(r.src, r.seg.file, folders)
                except OSError as exc:
                    error = exc
            if error is None:
                moved.append(r)
            else:
                log.error("segment_not_finished", camera=r.seg.camera, staging=r.src, error=str(error),
                          action="it stays in staging; finished again when its run closes or at the next start")
        unsettled = durable.flush_all(list(folders), staging.fsync_dir)
        done: list[FinishedSegment] = []
        for r in moved:
            seg = r.seg
            error = unsettled.get(os.path.dirname(seg.file)) or unsettled.get(os.path.dirname(r.src))
            if error is not None:
                log.error("segment_not_finished", camera=seg.camera, path=seg.file, error=str(error),
                          action="in place but not catalogued: its name may not survive a power cut; "
                                 "`cctv-daemon check` reports it as file-without-row, `check --repair` adds its row")
                continue
            start, end = seg.start, seg.end
            log.info(
                "segment_finished",
                camera=seg.camera,
                path=seg.file,
                start=segment_names.stamp(start),
                end=segment_names.stamp(end),
                start_at=round(start, 3),
                end_at=round(end, 3),
                duration=round(seg.duration, 3),
                media_start=round(r.media_start, 3),
                media_duration=seg.media_duration,
                bytes=seg.size,
                recovered=seg.recovered,
                clamped=r.clamped or None,
                run_id=seg.run_id,
            )
            self.bus.publish(seg)
            done.append(seg)
        return done

    def timeline(self, camera: str) -> CameraTimeline:
        tl = self._timelines.get(camera)
        if tl is None:
            tl = self._timelines[camera] = CameraTimeline(camera)
        return tl

    def seed_last_ends(self, ends: dict[str, float]) -> None:
        """Startup: the newest end per camera in the catalog; no new segment will start before it."""
        for camera, end in ends.items():
            self.timeline(camera).seed(end)

    # -- end of a run, and startup recovery -------------------------------------------------------------
    def close_run(self, cam_dir: Path, run_id: str) -> list[FinishedSegment]:
        """After a run's ffmpeg has exited (or at startup for runs of an earlier daemon): finish what its list
        names, finalize a partial last segment (ffmpeg killed), then remove the run's bookkeeping files."""
        done: list[FinishedSegment] = []
        list_file = staging.list_path(cam_dir, run_id)
        reader = _ListReader(list_file, cam_dir)
        listed = reader.read_new()
        for staged in listed:
            seg = self.finish(staged, recovered=True)
            if seg:
                done.append(seg)
        listed_end = max((s.end_s for s in listed), default=0.0)
        first = min(listed, key=lambda s: s.start_s, default=None)
        first_index = staging.segment_index(os.path.basename(first.file)) if first is not None else None
        older: list[Path] = []  # complete segments that dropped out of the list's window unseen (daemon was down)
        later: list[Path] = []
        for partial in sorted(cam_dir.glob(f"{run_id}_*.mp4")):
            parsed = staging.segment_index(partial.name)
            if first is not None and first_index is not None and parsed is not None and parsed[1] < first_index[1]:
                older.append(partial)
            else:
                later.append(partial)
        begin = first.start_s if first is not None else 0.0
        for partial in reversed(older):  # they end where the next one begins
            seg = self._finish_partial(partial, run_id, begin, backwards=True)
            if seg:
                done.append(seg)
                begin -= seg.duration
        for partial in later:
            seg = self._finish_partial(partial, run_id, listed_end)
            if seg:
                done.append(seg)
                listed_end += seg.duration  # a later partial continues where this one ended
        if not any(cam_dir.glob(f"{run_id}_*.mp4")):
            # Bookkeeping only (no footage): the list, its .tmp (ffmpeg's rewrite), the metadata and its .tmp.
            for leftover in (list_file, list_file.with_name(list_file.name + ".tmp"),
                             staging.meta_path(cam_dir, run_id), staging.meta_tmp_path(cam_dir, run_id)):
                leftover.unlink(missing_ok=True)
            self._meta.pop((cam_dir.name, run_id), None)
            self.timeline(cam_dir.name).forget_run(run_id)
        return done

    def recover_all(self) -> list[FinishedSegment]:
        """Startup: every run found in staging belongs to a dead ffmpeg (orphans were stopped first)."""
        done: list[FinishedSegment] = []
        roots = [self.root] + ([self.legacy_root] if self.legacy_root is not None else [])
        for root in roots:
            for cam_dir in staging.camera_dirs(root):
                for run_id in runs_in(cam_dir):
                    try:
                        done += self.close_run(cam_dir, run_id)
                    except OSError:  # one bad run (unreadable file, full disk) must not stop the others
                        log.exception("staging_recovery_failed", camera=cam_dir.name, run_id=run_id)
        if done:
            log.info("staging_recovered", segments=len(done))
        return done

    def _finish_partial(self, path: Path, run_id: str, start_s: float,
                        backwards: bool = False) -> FinishedSegment | None:
        closed_at = path.stat().st_mtime  # before the truncation touches it
        truncate_incomplete_tail(path)  # so that the probed duration is what will play
        size = path.stat().st_size
        probe = probe_duration(self.ffmpeg_exe, path) if size > 0 else None
        if probe is None or not math.isfinite(probe.duration) or probe.duration < 0:
            self._quarantine(path, "unreadable partial segment")
            return None
        if backwards:
            start_s = max(0.0, start_s - probe.duration)
        staged = StagedSegment(path.parent.name, run_id, os.fspath(path), start_s, start_s + probe.duration)
        meta = self._run_meta(path.parent, run_id, path.parent.name)
        log.warning(
            "partial_segment_finalized",
            camera=meta.camera,
            staging=str(path),
            duration=round(probe.duration, 3),
            errors=probe.errors[:500] or None,
        )
        # Its end is the file's last write (a complete fragment is written when the next keyframe arrives).
        return self.finish(staged, recovered=True, media_duration=probe.duration, closed_at=closed_at)

    def _quarantine(self, path: Path, why: str) -> None:
        """Never delete recorded bytes: an unreadable file is moved aside for a human to look at."""
        dest_dir = staging.damaged_dir(self.spool) / path.parent.name
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = Path(self._free_dest(os.fspath(dest_dir / path.name)))
        _move(os.fspath(path), os.fspath(dest))
        log.error(
            "segment_quarantined",
            camera=path.parent.name,
            path=str(dest),
            reason=why,
            bytes=dest.stat().st_size,
        )

    def _run_meta(self, cam_dir: Path | str, run_id: str, camera: str, fresh: bool = False) -> staging.RunMeta:
        """The run's camera, feed and anchor; `fresh`: re-read (the camera refines the anchor for a while)."""
        key = (os.path.basename(cam_dir), run_id)
        meta = self._meta.get(key)
        if meta is None or meta.anchor is None or fresh:
            # A kill while the metadata was written leaves only its .tmp (complete, as it was fsynced before the
            # rename that did not happen, or cut short: then it does not parse and the camera's name stands in).
            cam_dir = Path(cam_dir)
            meta = (staging.read_meta(cam_dir, run_id)
                    or staging.read_meta_file(staging.meta_tmp_path(cam_dir, run_id))
                    or staging.RunMeta(camera, camera))
            self._meta[key] = meta
        return meta

    @staticmethod
    def _free_dest(dest: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
        """`dest`, or `dest~N` if that name is on disk or `taken` (by an earlier segment of the same batch)."""
        n = 1
        candidate = dest
        stem, suffix = os.path.splitext(dest)
        while candidate in taken or os.path.exists(candidate):
            candidate = f"{stem}~{n}{suffix}"
            n += 1
        return candidate


def runs_in(cam_dir: Path) -> list[str]:
    """Every run with anything left in a camera's staging folder: list, metadata (or its .tmp), segment files."""
    runs = {p.stem for p in staging.lists_dir(cam_dir).glob("*.csv")}
    runs |= {p.name[: -len(".csv.tmp")] for p in staging.lists_dir(cam_dir).glob("*.csv.tmp")}
    runs |= {p.stem for p in cam_dir.glob("*.json")}
    runs |= {p.name[: -len(".json.tmp")] for p in cam_dir.glob("*.json.tmp")}
    runs |= {r for p in cam_dir.glob("*.mp4") if (r := staging.run_of_segment(p))}
    return sorted(runs)


def fsync_file(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move(src: Path | str, dest: Path | str) -> None:
    """Rename and make the rename durable (both folders fsynced): one file, as a quarantine does."""
    folders: dict[str, None] = {}
    _rename(os.fspath(src), os.fspath(dest), folders)
    for folder in folders:
        staging.fsync_dir(folder)


def _rename(src: str, dest: str, folders: dict[str, None]) -> None:
    """Rename (atomic: staging is on savePath's filesystem) and note both folders, whose entries the caller makes
    durable. Across filesystems (a legacy staging folder under another stateDir): copy to a hidden temporary name,
    fsync, rename, then unlink, so that a crash never leaves a truncated file under a final name."""
    dest_dir = os.path.dirname(dest)
    try:
        _replace(src, dest, dest_dir)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        os.makedirs(dest_dir, exist_ok=True)
        tmp = os.path.join(dest_dir, f".{os.path.basename(dest)}.partial")
        shutil.copyfile(src, tmp)
        fsync_file(tmp)
        os.replace(tmp, dest)
        staging.fsync_dir(dest_dir)
        os.unlink(src)
    folders[dest_dir] = None
    folders[os.path.dirname(src)] = None


def _replace(src: str, dest: str, dest_dir: str) -> None:
    """os.replace; a missing destination folder (a new camera or day) is made on first use, not looked up for
    every segment."""
    try:
        os.replace(src, dest)
    except FileNotFoundError:
        if os.path.isdir(dest_dir):
            raise  # the source is gone
        os.makedirs(dest_dir, exist_ok=True)
        os.replace(src, dest)
