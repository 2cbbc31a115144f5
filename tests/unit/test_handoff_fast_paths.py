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


def test_a_segment_finished_already_is_skipped_without_a_stat_of_its_own(tmp_path: Path) -> None:
    """The finisher finds a missing staging file by the tail check's open (ninth pass: no exists() first), for a
    segment seen at once and for one read late (its end from the file's mtime): None, nothing published."""
    from cctv_daemon.core.clock import SystemClock
    from cctv_daemon.core.events import EventBus
    from cctv_daemon.recording.ffmpeg_locate import find_ffmpeg
    from cctv_daemon.segments.timeline import Observed
    from tests.unit.test_robust_segments import ANCHOR, staged_run

    save = tmp_path / "rec"
    _cam_dir, [first, second] = staged_run(save / ".cctv", n=2)
    published: list[FinishedSegment] = []
    bus = EventBus()
    bus.subscribe("catalog", published.append)
    fin = finisher.SegmentFinisher(save, save / ".cctv", find_ffmpeg(), bus, SystemClock())
    first_seen = type(first)(first.camera, first.run_id, first.file, first.start_s, first.end_s,
                             Observed(ANCHOR + first.end_s, 100.0))
    done = [fin.finish(first_seen), fin.finish(second)]  # seen at once; read late (mtime)
    assert all(d is not None for d in done) and published == done
    assert fin.finish(first_seen) is None and fin.finish(second) is None  # both gone from staging now
    assert published == done
    assert [Path(d.file).exists() for d in done if d is not None] == [True, True]


def test_the_bus_delivers_to_a_subscriber_added_after_a_publish() -> None:
    """The bus keeps its subscribers per event type once published (ninth pass); a later subscription counts."""
    from cctv_daemon.core.events import CameraStateChanged, EventBus

    bus = EventBus()
    got: list[str] = []
    seg = FinishedSegment("cam", "main", "/rec/cam/a.mp4", 1.0, 2.0, 3, "r")
    state = CameraStateChanged("cam", "starting", "recording", "", 1.0)
    bus.subscribe("first", lambda _s: got.append("first"))
    bus.publish(seg)
    bus.publish(state)  # no subscriber of that kind yet
    bus.subscribe_all("all", lambda e: got.append(f"all:{type(e).__name__}"))
    bus.on(CameraStateChanged, "states", lambda _e: got.append("states"))
    bus.publish(seg)
    bus.publish(state)
    assert got == ["first", "first", "all:FinishedSegment", "all:CameraStateChanged", "states"]
