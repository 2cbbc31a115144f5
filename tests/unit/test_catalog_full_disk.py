"""Finding 13 (catalog part): on a full disk the catalog's insert failed ("database or disk is full", the bus
logged `subscriber_failed`), leaving a finished file without a row. Now the insert asks retention to make room
(oldest footage first) and tries again. A real full disk: an 8 MiB tmpfs filled to ENOSPC, real SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cctv_daemon.catalog.services import CatalogServices
from cctv_daemon.config.model import parse_config
from cctv_daemon.core.clock import FakeClock
from cctv_daemon.core.events import FinishedSegment
from tests.support.tmpfs import fill, tmpfs
from tests.unit.catalog_helpers import files_on_disk, put_segment

T0 = 1_800_000_000.0


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "8m") as d:
        yield d


@pytest.mark.parametrize("reserve", [True, False], ids=["with-reserve", "reserve-gone"])
def test_insert_on_a_full_disk_makes_room_and_gets_its_row(disk: Path, reserve: bool) -> None:
    """With the space reserve, the deletions are recorded in order; without it (the disk filled before the
    reserve could be made) the file goes first, then its row: either way no file is left without a row."""
    config = parse_config({"cameras": [{"cameraName": "gate", "source": "test"}],
                           "storageConfig": {"savePath": str(disk / "rec"), "minFreeDiskGB": 0}})
    services = CatalogServices(config, FakeClock(T0 + 3600))
    cat = services.catalog
    old = [put_segment(cat, "gate", T0 + 10 * i, size=1_000_000, feed="gate") for i in range(4)]
    services.retention.enforce()  # what the retention thread does at start (nothing to delete; the reserve)
    assert services.retention.reserve is not None and services.retention.reserve.path.exists()
    if not reserve:
        services.retention.reserve.release()
    new = put_segment(cat, "gate", T0 + 100, size=20_000, feed="gate", catalogue=False)  # renamed into place
    cat.query("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL must grow for the next commit
    fill(disk / "filler")
    seg = FinishedSegment("gate", "gate", cat.abs(new.path), new.start, new.end, new.size, "r1")
    services.add_segment(seg)  # no thread running: room is made right here
    row = cat.get_live(new.path)
    assert row is not None and row.size == 20_000
    assert old[0].path not in files_on_disk(cat.save_path)  # the oldest made room
    assert new.path in files_on_disk(cat.save_path)
    assert (disk / "filler").exists()  # not ours: never touched
    cat.close()


def test_the_same_full_disk_fails_the_plain_insert(disk: Path) -> None:
    """The fault is real: without making room, the same insert fails with SQLite's "disk is full"."""
    config = parse_config({"cameras": [{"cameraName": "gate", "source": "test"}],
                           "storageConfig": {"savePath": str(disk / "rec"), "minFreeDiskGB": 0}})
    services = CatalogServices(config, FakeClock(T0 + 3600))
    cat = services.catalog
    put_segment(cat, "gate", T0, size=1_000_000, feed="gate")
    new = put_segment(cat, "gate", T0 + 100, size=20_000, feed="gate", catalogue=False)
    cat.query("PRAGMA wal_checkpoint(TRUNCATE)")
    fill(disk / "filler")
    seg = FinishedSegment("gate", "gate", cat.abs(new.path), new.start, new.end, new.size, "r1")
    with pytest.raises(Exception, match=r"disk is full|No space"):
        cat.add_segment(seg)
    cat.close()
