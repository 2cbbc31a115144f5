from __future__ import annotations

import random

import pytest

from cctv_daemon.core.backoff import Backoff
from cctv_daemon.segments import names as segment_names


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    b = Backoff(1.0, 30.0, jitter=0.2, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    for n, d in enumerate(delays):
        raw = min(30.0, 2.0**n)
        assert raw * 0.8 <= d <= raw * 1.2
    assert max(delays) <= 36.0
    b.reset()
    assert b.next_delay() <= 1.2


def test_backoff_at_cap_jumps_straight_to_the_cap() -> None:
    b = Backoff(1.0, 30.0, rng=random.Random(1))
    assert 24.0 <= b.next_delay(at_cap=True) <= 36.0


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(5.0, 1.0)


def test_names_round_trip_and_touch() -> None:
    start, mid, end = 1_800_000_000.4, 1_800_000_600.6, 1_800_001_200.2
    a = segment_names.file_name("gate_2", "feed_x", start, mid)
    b = segment_names.file_name("gate_2", "feed_x", mid, end)
    assert a == "gate_2_feed_x_20270115T080000Z_20270115T081001Z.mp4"
    pa = segment_names.parse_file_name(a, "gate_2")
    pb = segment_names.parse_file_name(b, "gate_2")
    assert pa is not None and pb is not None
    assert (pa.camera, pa.feed_id) == ("gate_2", "feed_x")
    assert pa.end == pb.start
    assert segment_names.parse_file_name(a, "other") is None
    assert segment_names.parse_file_name("notes.txt", "gate_2") is None


def test_final_path_uses_utc_date_of_start() -> None:
    from pathlib import Path

    p = segment_names.final_path(Path("/rec"), "gate", "g", 1_800_000_000, 1_800_000_600)
    assert p == Path("/rec/gate/2027-01-15/gate_g_20270115T080000Z_20270115T081000Z.mp4")
