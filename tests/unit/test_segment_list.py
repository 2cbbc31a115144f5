"""GET /api/segments' listing (api/segment_list.py) over a real SQLite catalog: pages that follow `next` give the
same segments and the same gaps as one page, and as the catalog's own query and gap finder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cctv_daemon.api import ids
from cctv_daemon.api.segment_list import BadCursor, Cursor, listing
from cctv_daemon.catalog import labels
from cctv_daemon.catalog.store import Catalog, with_gaps
from cctv_daemon.core.clock import FakeClock
from tests.unit.catalog_helpers import make_uploads_table, put_segment, set_upload

T0 = 1_800_000_000.0


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    c = Catalog(tmp_path / "rec" / ".cctv" / "catalog.sqlite3", tmp_path / "rec", FakeClock(T0))
    labels.ensure_table(c)
    make_uploads_table(c)
    # gate: 0..100 s with a hole at 40..60; yard: 30..90 s; door: none
    for i in (0, 1, 2, 3, 6, 7, 8, 9):
        row = put_segment(c, "gate", T0 + 10 * i, size=100 + i)
        if i == 2:
            set_upload(c, row, "uploaded")
    for i in range(3, 9):
        put_segment(c, "yard", T0 + 10 * i + 0.25, size=200)
    return c


def pages(cat: Catalog, camera: str | None, start: float, end: float, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = None
    while True:
        page = listing(cat, camera, start, end, None, limit, after)
        doc = json.loads(page.body)
        out.append(doc)
        if doc["next"] is None:
            return out
        assert page.next == doc["next"] and len(doc["segments"]) == limit
        after = Cursor.decode(doc["next"])


@pytest.mark.parametrize("camera", [None, "gate", "yard"])
@pytest.mark.parametrize("limit", [1, 3, 5, 100])
def test_pages_together_are_the_whole_listing(cat: Catalog, camera: str | None, limit: int) -> None:
    start, end = T0 - 5, T0 + 120
    docs = pages(cat, camera, start, end, limit)
    segs = [s for d in docs for s in d["segments"]]
    gaps = sorted((g["camera"], g["start"], g["end"]) for d in docs for g in d["gaps"])
    rows = cat.segments(camera=camera, start=start, end=end)
    assert [s["id"] for s in segs] == [ids.segment_id(r) for r in rows]
    assert [(s["camera"], s["start"], s["end"], s["size"]) for s in segs] == \
        [(r.camera, r.start, r.end, r.size) for r in rows]
    assert gaps == sorted((g.camera, g.start, g.end) for g in with_gaps(rows, start, end))
    assert all(s["duration"] == round(s["end"] - s["start"], 3) for s in segs)
    if camera != "yard":
        assert [s["upload_state"] for s in segs if s["camera"] == "gate" and s["start"] == T0 + 20] == ["uploaded"]
    assert all(s["video_url"] == f"/api/segments/{s['id']}/video" and s["labels"] == [] for s in segs)


def test_a_page_is_the_document_the_model_describes(cat: Catalog) -> None:
    from cctv_daemon.api.models import SegmentList

    labels.add(cat, "gate", "INC-7", T0 + 5, T0 + 25)
    page = listing(cat, "gate", T0, T0 + 100, None, 4, None)
    doc = SegmentList.model_validate_json(page.body)
    assert doc.next is not None and len(doc.segments) == 4
    assert [s.labels for s in doc.segments] == [["INC-7"], ["INC-7"], ["INC-7"], []]
    only = json.loads(listing(cat, "gate", T0, T0 + 100, "INC-7", 100, None).body)
    assert len(only["segments"]) == 3 and only["gaps"] == []


@pytest.mark.parametrize("text", ["", "x", "bm9wZQ", "WzEsMiwzXQ", "WyJhIiwxLDIsIngiXQ"])
def test_a_foreign_cursor_is_refused(text: str) -> None:
    with pytest.raises(BadCursor):
        Cursor.decode(text)
