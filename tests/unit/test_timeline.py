"""Wall-clock names (segments/timeline.py), wall-clock steps with the injected clock (never the machine's), the
reach probe's rules (recording/reach_probe.py) and the catalog's media-duration column."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

import pytest
import structlog

from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.core.events import FinishedSegment
from cctv_daemon.recording.reach_probe import ReachProbe, rtsp_target
from cctv_daemon.segments.timeline import CameraTimeline, Observed

T0 = 1_800_000_000.0


def seen(clock: FakeClock) -> Observed:
    return Observed(clock.time(), clock.monotonic())


def test_segments_of_a_run_touch_and_ends_are_when_they_closed() -> None:
    tl = CameraTimeline("gate")
    first = tl.place("r1", 0.0, T0 + 4.0, 4.1, anchor=T0 - 0.5)
    assert first.start == pytest.approx(T0 - 0.1)  # short first segment: its end minus its media
    second = tl.place("r1", 4.1, T0 + 7.0, 3.03, anchor=T0 - 0.5)  # a fast camera: 3.03 s of media in 3 s
    assert (second.start, second.end) == (first.end, T0 + 7.0)
    assert not first.clamped and not second.clamped


def test_a_long_first_segment_starts_at_the_measured_anchor() -> None:
    tl = CameraTimeline("gate")
    placed = tl.place("r1", 0.0, T0 + 606.0, 612.0, anchor=T0)  # 1 % fast: 612 s of media in 606 s
    assert placed.start == T0


def test_a_new_run_never_starts_before_the_previous_end() -> None:
    tl = CameraTimeline("gate")
    tl.seed(T0 + 10.0)  # the newest end in the catalog
    placed = tl.place("r2", 0.0, T0 + 12.0, 3.0, anchor=None)  # would start at T0 + 9
    assert placed.start == T0 + 10.0 and placed.clamped


def test_backward_wall_clock_step_clamps_names_and_is_logged() -> None:
    clock = FakeClock(T0)
    tl = CameraTimeline("gate")
    with structlog.testing.capture_logs() as logs:
        tl.check_step(seen(clock))
        a = tl.place("r1", 0.0, clock.time(), 3.0, anchor=None)
        clock.advance(3.0)
        clock._wall -= 60.0  # NTP steps the wall clock back a minute; the monotonic clock does not move
        step = tl.check_step(seen(clock))
        b = tl.place("r1", 3.0, clock.time(), 3.0, anchor=None)
        clock.advance(3.0)
        tl.check_step(seen(clock))
        c = tl.place("r1", 6.0, clock.time(), 3.0, anchor=None)
    assert step == pytest.approx(-60.0)
    assert (b.start, b.end) == (a.end, a.end) and b.clamped  # never before the previous end
    assert c.start == b.end and c.end >= c.start
    events = [e["event"] for e in logs]
    assert "wall_clock_step" in events and "segment_end_clamped" in events
    # Once the clock has passed the old end, names follow it again.
    clock.advance(60.0)
    tl.check_step(seen(clock))
    d = tl.place("r1", 69.0, clock.time(), 3.0, anchor=None)
    assert d.end == clock.time() and not d.clamped


def test_forward_wall_clock_step_names_follow_the_clock() -> None:
    clock = FakeClock(T0)
    tl = CameraTimeline("gate")
    tl.check_step(seen(clock))
    a = tl.place("r1", 0.0, clock.time(), 3.0, anchor=None)
    clock.advance(3.0)
    clock._wall += 3600.0
    with structlog.testing.capture_logs() as logs:
        assert tl.check_step(seen(clock)) == pytest.approx(3600.0)
    b = tl.place("r1", 3.0, clock.time(), 3.0, anchor=None)
    assert b.start == a.end and b.end == clock.time()
    assert logs[0]["event"] == "wall_clock_step" and logs[0]["direction"] == "forward"


def test_recovery_continues_a_run_named_by_an_earlier_daemon() -> None:
    tl = CameraTimeline("gate")
    tl.seed(T0 + 30.0)
    placed = tl.place("r1", 30.0, T0 + 33.02, 3.0, anchor=T0)  # not the run's first: touches the last end
    assert placed.start == T0 + 30.0


def test_reach_probe_says_back_only_after_seeing_the_camera_down() -> None:
    clock = FakeClock(T0)
    answers = iter([True, False, False, True])
    probe = ReachProbe(("127.0.0.1", 554), clock, connect=lambda _t: next(answers))
    assert probe.poll() is False  # reachable, but it was never seen down: nothing to hurry
    clock.advance(0.2)
    assert probe.poll() is False  # not yet time for the next probe
    clock.advance(0.4)
    assert probe.poll() is False  # down
    clock.advance(0.6)
    assert probe.poll() is False  # still down
    clock.advance(0.6)
    assert probe.poll() is True  # back
    assert probe.probes == 4


def test_reach_probe_after_connection_refused_needs_no_second_look() -> None:
    """The camera may come back before the first probe: a refused connect already showed it gone."""
    probe = ReachProbe(("127.0.0.1", 554), FakeClock(T0), connect=lambda _t: True, seen_down=True)
    assert probe.poll() is True


def test_reach_probe_real_sockets_refused_then_back_without_blocking() -> None:
    clock = FakeClock(T0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    probe = ReachProbe(("127.0.0.1", port), clock)  # a real, refused connect
    started = time.monotonic()
    for _ in range(50):
        assert probe.poll() is False
        if probe.seen_down:
            break
        time.sleep(0.01)
    assert probe.seen_down
    assert time.monotonic() - started < 1.0
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", port))
        srv.listen()
        clock.advance(0.6)
        results = [probe.poll()]
        for _ in range(50):
            if results[-1]:
                break
            time.sleep(0.01)
            results.append(probe.poll())
        assert results[-1] is True


def test_reach_probe_says_when_it_next_has_work() -> None:
    """The main loop sleeps until `due()`: the next probe, or soon after a connect started (its idle tick of 1 s
    made a camera's return take up to 2 s to see, one tick to start the connect and one to settle it)."""
    clock = FakeClock(T0)
    pending = socket.socket()  # stands for a connect in flight (never settled here: nothing to select on)
    answers = iter([False, pending])
    probe = ReachProbe(("127.0.0.1", 554), clock, connect=lambda _t: next(answers))
    t = clock.monotonic()
    assert probe.due() <= t  # a new probe looks at once
    assert probe.poll() is False  # refused
    assert probe.due() == pytest.approx(t + 0.5)  # the next probe, PROBE_INTERVAL_S later
    clock.advance(0.5)
    probe._settle = lambda now: None  # type: ignore[method-assign]  # the connect stays in flight
    assert probe.poll() is False
    sent = clock.monotonic()
    assert probe.due() == pytest.approx(sent + 0.05)  # a LAN connect settles within milliseconds
    clock.advance(0.1)
    assert probe.due() == pytest.approx(sent + 0.25)
    clock.advance(0.2)
    assert probe.due() == pytest.approx(sent + 1.0)  # then only at its timeout (a host that drops the SYN)
    probe.close()


def test_rtsp_target_needs_an_ip_literal_and_carries_no_credentials() -> None:
    assert rtsp_target("rtsp://u:p%40ss@10.0.0.5/stream") == ("10.0.0.5", 554)
    assert rtsp_target("rtsp://[::1]:8554/x") == ("::1", 8554)
    assert rtsp_target("rtsp://camera.local/x") is None  # a DNS lookup could block the loop
    assert rtsp_target("http://10.0.0.5/x") is None


def test_catalog_gains_media_duration_in_place(tmp_path: Path) -> None:
    db = tmp_path / "catalog.sqlite3"
    with sqlite3.connect(db) as conn:  # a catalog made before the column existed
        conn.executescript(
            "CREATE TABLE catalog_schema (version INTEGER NOT NULL); INSERT INTO catalog_schema VALUES (1);"
            "CREATE TABLE segments (path TEXT PRIMARY KEY, camera TEXT NOT NULL, feed_id TEXT NOT NULL,"
            ' start REAL NOT NULL, "end" REAL NOT NULL, duration REAL NOT NULL, size INTEGER NOT NULL,'
            " state TEXT NOT NULL, run_id TEXT, recovered INTEGER NOT NULL DEFAULT 0, added_at REAL NOT NULL,"
            " state_at REAL NOT NULL, reason TEXT);"
            "INSERT INTO segments VALUES ('gate/a.mp4', 'gate', 'main', 1, 2, 1, 10, 'complete', NULL, 0, 0, 0,"
            " NULL);")
    save = tmp_path / "rec"
    cat = Catalog(db, save)
    try:
        old = cat.get("gate/a.mp4")
        assert old is not None and old.media_duration is None
        seg = FinishedSegment("gate", "main", save / "gate" / "b.mp4", T0, T0 + 600, 5, "r1",
                              media_duration=606.0)
        cat.add_segment(seg)
        row = cat.get("gate/b.mp4")
        assert row is not None and row.media_duration == 606.0 and row.duration == 600
        assert cat.newest_end() == {"gate": T0 + 600}
    finally:
        cat.close()
    Catalog(db, save).close()  # opening again is a no-op
