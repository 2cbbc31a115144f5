"""What a stopped daemon leaves: its process exits without the interpreter's slow final garbage collection
(cli/main.py entry(): gc.freeze()), yet its catalogs are closed as before, so a SQLite catalog is checkpointed and
no -wal / -shm file is left beside it (a copy of catalog.sqlite3 alone is the whole catalog)."""

from __future__ import annotations

from tests.conftest import DaemonFactory
from tests.support.daemon import pattern_camera


def test_a_stopped_daemon_leaves_its_catalog_checkpointed(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory({"cameras": [pattern_camera("t1")]})
    d.wait_segments("t1", 2, 60)
    assert d.stop() == 0
    db = d.state_dir / "catalog.sqlite3"
    assert db.exists()
    left = sorted(p.name for p in d.state_dir.glob("catalog.sqlite3-*"))
    assert left == [], left
