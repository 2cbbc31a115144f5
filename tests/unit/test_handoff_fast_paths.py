"""The hand-off's cheaper steps (sixth CPU pass) keep their results: the destination folder made on first use, the
cached stamps, the API's event broker with nobody listening."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cctv_daemon.api.events_stream import EventBroker
from cctv_daemon.core import constants as c
from cctv_daemon.core.events import FinishedSegment
from cctv_daemon.segments import finisher, names


def test_move_makes_a_missing_destination_folder_and_still_fails_for_a_missing_source(tmp_path: Path) -> None:
    src = tmp_path / "staging" / "a.mp4"
    src.parent.mkdir()
    src.write_bytes(b"x" * 10)
    dest = tmp_path / "rec" / "cam" / "2026-11-29" / "a.mp4"  # neither the camera's nor the day's folder exists
    finisher._move(str(src), str(dest))
    assert dest.read_bytes() == b"x" * 10 and not src.exists()
    with pytest.raises(FileNotFoundError):
        finisher._move(str(src), str(dest.with_name("b.mp4")))  # the source is gone: an error, as before
    with pytest.raises(FileNotFoundError):
        finisher._move(str(src), str(tmp_path / "rec" / "other" / "b.mp4"))
    assert (tmp_path / "rec" / "other").is_dir()  # made (empty): harmless, the next segment uses it


def test_cached_stamps_are_the_stamps() -> None:
    rng = random.Random(7)
    values = [rng.uniform(0, 4e9) for _ in range(5000)] + [86399.5, 86400.49, 86400.5, -0.4, 1.5e9 + 0.5]
    for epoch in values + values[:100]:
        dt = datetime.fromtimestamp(round(epoch), tz=timezone.utc)
        assert names.stamp(epoch) == dt.strftime(c.TIME_FORMAT)
        assert names.date_dir(epoch) == dt.strftime(c.DATE_DIR_FORMAT)


def test_event_broker_counts_events_nobody_listens_to_and_sends_the_next_one() -> None:
    broker = EventBroker()
    seg = FinishedSegment("cam", "main", "/rec/cam/a.mp4", 1.0, 11.0, 100, "r1")
    broker.publish(seg)
    broker.publish(seg)
    assert broker.published == 2

    async def listen() -> str:
        _sid, q = broker.open()
        broker.publish(seg)
        return await asyncio.wait_for(q.get(), 5)

    text = asyncio.run(listen())
    assert text.startswith("id: 3\nevent: segment_finished\n")
    data = json.loads(text.split("data: ", 1)[1])
    assert data["camera"] == "cam" and data["size"] == 100 and "file" not in data and data["id"]
