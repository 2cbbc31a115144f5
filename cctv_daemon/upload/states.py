"""The states of an upload row (table `uploads`, upload/queue.py), apart so that the CLI can name them without
importing the catalog (SQLAlchemy)."""

from __future__ import annotations

PENDING = "pending"
UPLOADING = "uploading"
UPLOADED = "uploaded"
FAILED = "failed"
ABANDONED = "abandoned"
ALL = (PENDING, UPLOADING, UPLOADED, FAILED, ABANDONED)
RETRYING = "retrying"  # shown, never stored: waiting for another automatic attempt after a failed one
SHOWN_STATES = (PENDING, RETRYING, UPLOADING, UPLOADED, FAILED, ABANDONED)  # what `uploads list --state` takes
