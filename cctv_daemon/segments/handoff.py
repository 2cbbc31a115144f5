"""The segment hand-off: the watcher sees ffmpeg's segment lists grow; every complete segment, and the end of every
ffmpeg run, goes through one queue to one worker thread that finishes them in order (segments/finisher.py moves
the file and publishes FinishedSegment on the bus). Cameras call run_ended() from the main loop."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import structlog

from cctv_daemon.segments import staging
from cctv_daemon.segments.finisher import SegmentFinisher
from cctv_daemon.segments.watcher import SegmentWatcher, StagedSegment

log = structlog.get_logger("cctv_daemon.handoff")

_RunEnd = tuple[Path, str]  # (camera's staging dir, run id)
_Item = StagedSegment | _RunEnd | None  # None: stop

# Segments that close within GATHER_IDLE_S of each other (cameras started together cut their segments together:
# 16 cameras' segments closed within 0.72 s, 30-170 ms apart, on the benchmark VM) are finished as one batch: one
# syncfs for their data and one for their renames instead of one syncfs and two folder fsyncs each (issue 10,
# docs/benchmarks.md "Tenth pass"). A segment is catalogued at most GATHER_MAX_S later than alone.
GATHER_IDLE_S = 0.25
GATHER_MAX_S = 1.0
GATHER_MAX_SEGMENTS = 256


class SegmentHandoff:
    def __init__(self, staging_root: Path, finisher: SegmentFinisher) -> None:
        self.staging_root = staging_root
        self.finisher = finisher
        # SimpleQueue: put and get in C (queue.Queue's are Python: a Condition, a lock allocated per waiting get);
        # the hop is paid once per segment on both threads (docs/benchmarks.md, ninth pass).
        self._work: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.watcher = SegmentWatcher(staging_root, self._work.put, finisher.clock)
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        self.watcher.start()
        self._worker = threading.Thread(target=self._work_loop, name="segment-finisher", daemon=True)
        self._worker.start()

    def poll_all(self) -> None:
        """Safety net (the loop calls it every 30 s: daemon.SAFETY_POLL_S) and the last look at shutdown."""
        self.watcher.poll_all()

    def run_ended(self, camera: str, cam_dir: Path, run_id: str) -> None:
        """An ffmpeg run exited: take its last segments, then close the run (after them, in order)."""
        self.watcher.poll(staging.list_path(cam_dir, run_id))
        self._work.put((cam_dir, run_id))

    def pending(self) -> int:
        return self._work.qsize()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish everything queued, then stop the worker and the watcher."""
        self.watcher.poll_all()
        self._work.put(None)
        if self._worker is not None:
            self._worker.join(timeout)
        self.watcher.stop()

    def _work_loop(self) -> None:
        item: _Item = self._work.get()
        while item is not None:
            after: _Item | _NoItem = _NOTHING
            try:
                if isinstance(item, StagedSegment):
                    batch, after = self._gather(item)
                    self.finisher.finish_batch(batch)
                else:
                    cam_dir, run_id = item
                    self.finisher.close_run(cam_dir, run_id)
                    self.watcher.forget(staging.list_path(cam_dir, run_id))
            except Exception:
                log.exception("segment_handoff_failed", item=str(item))
            item = self._work.get() if isinstance(after, _NoItem) else after

    def _gather(self, first: StagedSegment) -> tuple[list[StagedSegment], _Item | _NoItem]:
        """`first` and the segments queued after it until none comes for GATHER_IDLE_S (GATHER_MAX_S at most); a
        run's end or the stop ends the batch and is handed back, to be done after it, in order."""
        batch = [first]
        deadline = time.monotonic() + GATHER_MAX_S
        while len(batch) < GATHER_MAX_SEGMENTS:
            wait = min(GATHER_IDLE_S, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                item = self._work.get(timeout=wait)
            except queue.Empty:
                break
            if not isinstance(item, StagedSegment):
                return batch, item
            batch.append(item)
        return batch, _NOTHING


class _NoItem:
    """Nothing handed back by _gather (None is the stop)."""


_NOTHING = _NoItem()
