"""The hand-off's fast path for a segment's row on a SQLite file (catalog/writes.py add_one_sqlite): the same row
and totals as the general SQLAlchemy path, the general path for everything else (an existing row, an error, other
backends), and the same commit semantics (one transaction, not fsynced on its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import exc

from cctv_daemon.catalog import writes
from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.core.events import FinishedSegment

T0 = 1_800_000_000.0


def _catalog(tmp_path: Path, name: str, raw: bool, url: str | None = None) -> Catalog:
    save = tmp_path / name
    cat = Catalog(save / ".cctv" / "catalog.sqlite3", save, FakeClock(T0 + 3600), url=url, node_id="node-a")
    cat.db.raw_writes = raw
    return cat


def _segments(cat: Catalog) -> list[FinishedSegment]:
    return [
        FinishedSegment("gate", "main", cat.save_path / "gate" / "a.mp4", T0, T0 + 10.25, 1234, "r1"),
        FinishedSegment("gate", "main", cat.save_path / "gate" / "b.mp4", T0 + 10.25, T0 + 20.5, 99, "r1",
                        recovered=True, media_duration=10.2),
        FinishedSegment("yard", "sub", cat.save_path / "yard" / "c.mp4", T0, T0 + 600.0, 7 * 10**9, "r2",
                        media_duration=599.875),
    ]


def _rows(cat: Catalog) -> list[tuple[object, ...]]:
    cols = [c.name for c in cat.db.t.segments.columns if c.name != "id"]
    quoted = ", ".join(f'"{c}"' for c in cols)
    return cat.query(f"SELECT {quoted} FROM segments ORDER BY path")


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    calls: list[bool] = []
    real = writes.add_one_sqlite

    def counted(*a: Any, **kw: Any) -> bool:
        calls.append(done := real(*a, **kw))
        return done

    monkeypatch.setattr(writes, "add_one_sqlite", counted)
    yield calls


def test_fast_row_is_the_row_the_general_path_writes(tmp_path: Path, spy: list[bool]) -> None:
    fast, general = _catalog(tmp_path, "fast", True), _catalog(tmp_path, "general", False)
    for cat in (fast, general):
        for seg in _segments(cat):
            cat.add_segment(seg)
    assert spy == [True, True, True]  # the fast catalog took its path each time, the general one never
    assert _rows(fast) == _rows(general)
    assert len(_rows(fast)) == 3
    assert fast.totals() == general.totals() == {"gate": (2, 1333), "yard": (1, 7 * 10**9)}
    assert not fast.db.sqlite_conn.in_transaction  # type: ignore[union-attr]
    assert fast.query("PRAGMA synchronous") == [(2,)]  # FULL again for every other commit
    fast.close()
    general.close()


def test_existing_rows_take_the_general_path(tmp_path: Path, spy: list[bool]) -> None:
    cat = _catalog(tmp_path, "fast", True)
    seg = _segments(cat)[0]
    cat.add_segment(seg)
    cat.add_segment(seg)  # idempotent: kept
    assert spy == [True, False]
    assert cat.totals() == {"gate": (1, 1234)}
    rel = cat.rel(seg.path)
    cat.set_state(rel, "deleted")
    assert cat.totals() == {}
    cat.add_segment(seg)  # the file is back: revived by add_rows
    assert spy == [True, False, False]
    assert cat.query("SELECT state FROM segments") == [("complete",)]
    assert cat.totals() == {"gate": (1, 1234)}
    assert not cat.db.sqlite_conn.in_transaction  # type: ignore[union-attr]
    cat.close()


def test_an_error_leaves_nothing_and_is_raised_as_before(tmp_path: Path, spy: list[bool]) -> None:
    """Any SQLite error on the fast path rolls back and lets the general path run: it raises SQLAlchemy's error,
    which the callers (catalog/services.py: full disk, outage) already know."""
    cat = _catalog(tmp_path, "fast", True)
    cat.query("CREATE TRIGGER refuse BEFORE INSERT ON segment_totals BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(exc.DBAPIError, match="refused"):
        cat.add_segment(_segments(cat)[0])
    assert spy == [False]
    assert cat.query("SELECT COUNT(*) FROM segments") == [(0,)]  # the row went with its totals
    assert not cat.db.sqlite_conn.in_transaction  # type: ignore[union-attr]
    cat.query("DROP TRIGGER refuse")
    cat.add_segment(_segments(cat)[0])
    assert spy == [False, True]
    assert cat.totals() == {"gate": (1, 1234)}
    cat.close()


def test_every_backend_catalogues_the_same_row(tmp_path: Path, catalog_url: str | None, spy: list[bool]) -> None:
    """PostgreSQL and MariaDB keep the SQLAlchemy path (no sqlite3 connection); the rows are the same."""
    cat = _catalog(tmp_path, "any", True, url=catalog_url)
    for seg in _segments(cat):
        cat.add_segment(seg)
    assert spy == ([True] * 3 if catalog_url is None else [])
    assert cat.totals() == {"gate": (2, 1333), "yard": (1, 7 * 10**9)}
    s = cat.db.t.segments
    with cat.db.read() as conn:
        got = sorted((r.path, r.camera, r.feed_id, r.start, r.end, r.duration, r.size, r.state, r.run_id,
                      r.recovered, r.media_duration) for r in conn.execute(s.select()))
    assert got == [
        ("gate/a.mp4", "gate", "main", T0, T0 + 10.25, 10.25, 1234, "complete", "r1", 0, None),
        ("gate/b.mp4", "gate", "main", T0 + 10.25, T0 + 20.5, 10.25, 99, "complete", "r1", 1, 10.2),
        ("yard/c.mp4", "yard", "sub", T0, T0 + 600.0, 600.0, 7 * 10**9, "complete", "r2", 0, 599.875),
    ]
    cat.close()


def test_totals_are_read_on_the_sqlite3_connection_with_the_general_paths_result(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    """The totals (status every 5 s, retention) are read on the sqlite3 connection itself; the same answer as the
    SQLAlchemy path, which still runs where the raw read does not apply or fails."""
    cat = _catalog(tmp_path, "fast", True)
    for seg in _segments(cat):
        cat.add_segment(seg)
    general_calls: list[object] = []
    real_rows_of = cat.rows_of
    monkeypatch.setattr(cat, "rows_of", lambda stmt: general_calls.append(stmt) or real_rows_of(stmt))
    expected = {"gate": (2, 1333), "yard": (1, 7 * 10**9)}
    assert cat.totals() == expected and general_calls == []
    cat.db.raw_writes = False
    assert cat.totals() == expected and len(general_calls) == 1
    cat.db.raw_writes = True
    cat.db.cache[("raw", "totals")] = "SELECT * FROM no_such_table"  # any SQLite error: the general path answers
    assert cat.totals() == expected and len(general_calls) == 2
    cat.close()
