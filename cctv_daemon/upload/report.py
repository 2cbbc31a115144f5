"""What the uploader shows in `status`: the queue's counts (kept fresh by its housekeeping thread, so `status`
never waits on the catalog) and the status dict built from them and the uploader's own counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cctv_daemon.upload import queue as q

if TYPE_CHECKING:
    from cctv_daemon.upload.uploader import Uploader

RECOVERED_FIELDS = ("recovered_error", "recovered_error_at", "recovered_at")  # status: (error, its time, cleared at)
COUNT_KEYS = ("queue_length", "oldest_queued_at", "failed_count", "failed_oldest_start", "failed_oldest_path",
              "failed_last_error")  # queue_counts(); all None before the catalog database first answered


def queue_counts(queue: q.UploadQueue, max_attempts: int) -> dict[str, Any]:
    """The backlog and the given-up rows (a few SQL queries)."""
    count, oldest = queue.backlog(max_attempts)
    n_failed, oldest_failed, last_failed_error = queue.given_up(max_attempts)
    return {"queue_length": count, "oldest_queued_at": oldest, "failed_count": n_failed,
            "failed_oldest_start": oldest_failed.start if oldest_failed else None,
            "failed_oldest_path": oldest_failed.path if oldest_failed else None,
            "failed_last_error": last_failed_error}


def uploader_status(up: Uploader, state: str, counts: dict[str, Any], failing: list[str], alive: int,
                    in_flight: int) -> dict[str, Any]:
    """``state``: the uploader's, or "failing" while worker threads hit errors (``failing``: their names)."""
    oldest = counts["oldest_queued_at"]
    age = None if oldest is None else round(max(0.0, up.clock.time() - oldest), 1)
    return {
        "state": state,
        "queue_length": counts["queue_length"],
        "oldest_pending_age_s": age,
        "bytes_uploaded": up.bytes_uploaded,
        "uploads_done": up.uploads_done,
        "in_flight": in_flight,
        "last_error": up.last_error, "last_error_at": up.last_error_at,
        **dict(zip(RECOVERED_FIELDS, up.recovered or (None,) * 3, strict=True)),
        "failed_count": counts["failed_count"],
        "failed_oldest_start": counts["failed_oldest_start"],
        "failed_oldest_path": counts["failed_oldest_path"],
        "failed_last_error": counts["failed_last_error"],
        "max_attempts": up.max_attempts,
        "threads_alive": alive,
        "threads_failing": failing,
        "worker_errors": up.worker_errors,
        "worker_last_error": up.last_worker_error,
        "reconciled": up.reconciler.queued_total,
        "already_in_bucket": up.already_in_bucket,
    }
