"""The catalog by URL: adoption of a catalog made before the versioned schema (ids, upload states, recordings
kept), refusal of a newer schema (nothing written), exact totals under concurrent writers, node scoping, and the
URL's password never shown (errors, check-config)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from cctv_daemon.catalog import migrate
from cctv_daemon.catalog.engine import error_text, open_server, parse_url, safe_url
from cctv_daemon.catalog.errors import CatalogOpenError, CatalogUrlError, SchemaError
from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.core import constants as c
from cctv_daemon.upload.queue import UploadQueue
from tests.support import legacy_catalog
from tests.support.daemon import run_cli
from tests.support.databases import DatabaseServer


def test_legacy_sqlite_catalog_is_adopted_in_place(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    db = save / ".cctv" / c.CATALOG_FILENAME
    segs = [(f"gate/d/{i}.mp4", "gate", 100.0 + 10 * i, 110.0 + 10 * i, 1000 + i, st)
            for i, st in enumerate(["complete", "complete", "deleted", "deleting", "missing"])]
    ids = legacy_catalog.make(db, segs, uploads=[("gate/d/0.mp4", "gate", 100, 1000, "k/0", "uploaded", 1, None),
                                                 ("gate/d/1.mp4", "gate", 110, 1001, "k/1", "failed", 3, "x")])
    before = sqlite3.connect(db).execute("SELECT camera, count, bytes FROM segment_totals").fetchall()
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(db.read_bytes())
    # a read command first: it reads a migrated private copy and leaves the file exactly as it was
    ro = Catalog(copy, save, read_only=True)
    assert [r.path for r in ro.segments()] == ["gate/d/0.mp4", "gate/d/1.mp4"]
    ro.close()
    assert copy.read_bytes() == db.read_bytes() and not Path(f"{copy}-wal").exists()
    cat = Catalog(db, save, node_id="node-a")
    s = cat.db.t.segments
    got = {p: i for i, p in cat.rows_of(s.select().with_only_columns(s.c.id, s.c.path))}
    assert got == ids  # the ids the API's cursors and reconciliation were built on
    assert [(r.path, r.upload_state) for r in cat.segments()] == [("gate/d/0.mp4", "uploaded"),
                                                                  ("gate/d/1.mp4", "failed")]
    assert before == [("gate", 3, 1000 + 1001 + 1003)]
    assert cat.totals() == {"gate": (3, 1000 + 1001 + 1003)}  # recounted, then kept by the catalog itself
    cat.set_state("gate/d/3.mp4", "deleted")
    assert cat.totals() == {"gate": (2, 2001)}
    assert cat.query("SELECT version FROM catalog_schema") == [(2,)]  # an older cctv-daemon refuses the file
    assert cat.query("SELECT name FROM sqlite_master WHERE type = 'trigger'") == []
    from cctv_daemon.catalog import labels

    assert [r.label for r in labels.find(cat)] == ["delivery"]
    cat.close()
    queue = UploadQueue(db)
    row = queue.get("gate/d/1.mp4")
    assert row is not None and (row.state, row.attempts, row.failures, row.last_error) == ("failed", 3, 0, "x")
    queue.close()
    again = Catalog(db, save)  # idempotent: nothing more to do
    assert len(again.segments(states=("complete", "deleting", "deleted", "missing"))) == 5
    again.close()


def _set_revision(cat: Catalog, rev: str) -> None:
    with cat.transaction() as conn:
        conn.execute(text(f"UPDATE {cat.db.t.version_table} SET version_num = :r"), {"r": rev})


def test_newer_schema_is_refused_and_nothing_written(tmp_path: Path, catalog_url: str | None) -> None:
    save = tmp_path / "rec"
    path = save / ".cctv" / c.CATALOG_FILENAME
    cat = Catalog(path, save, url=catalog_url, node_id="n1")
    cat.add_rows([SegmentRow("t/a.mp4", "t", "main", 1.0, 2.0, 10)])
    _set_revision(cat, "9999")
    cat.close()
    for read_only in (False, True):
        with pytest.raises(SchemaError) as err:
            Catalog(path, save, url=catalog_url, node_id="n1", read_only=read_only)
        assert str(err.value).startswith("catalog.url:") and "9999" in str(err.value) and "newer" in str(err.value)
    if catalog_url is not None:
        with pytest.raises(SchemaError):
            migrate.probe(catalog_url)  # what check-config says
        db = open_server(parse_url(catalog_url), "n1", "")
        with db.read() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
            assert conn.execute(text("SELECT COUNT(*) FROM segments")).scalar() == 1
        db.close()


def test_totals_stay_exact_under_concurrent_writers(tmp_path: Path, catalog_url: str | None) -> None:
    save = tmp_path / "rec"
    path = save / ".cctv" / c.CATALOG_FILENAME
    cats = [Catalog(path, save, url=catalog_url, node_id="n1") for _ in range(3)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(25):
                row = SegmentRow(f"t/{k}-{i}.mp4", "t", "main", 10.0 * i, 10.0 * i + 10, 100 + i)
                cats[k].add_rows([row])
                cats[(k + 1) % 3].add_rows([row])  # the same row from another writer: still one
                if i % 3 == 0:
                    cats[k].set_state(row.path, "deleted")
                if i % 5 == 0:
                    cats[(k + 2) % 3].set_size(row.path, 7)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    live = cats[0].segments(states=("complete", "deleting"))
    assert cats[0].totals() == {"t": (len(live), sum(r.size for r in live))}
    assert len(cats[0].segments(states=("complete", "deleting", "deleted"))) == 75
    for cat in cats:
        cat.close()


def test_node_scoping_on_a_shared_database(tmp_path: Path, postgres_server: DatabaseServer) -> None:
    url = postgres_server.create_database("scoping")
    save = tmp_path / "rec"
    a = Catalog(save / "x", save, url=url, node_id="node-a")
    b = Catalog(save / "x", save, url=url, node_id="node-b", prefix="")
    a.add_rows([SegmentRow("t/1.mp4", "t", "main", 0.0, 10.0, 5)])
    b.add_rows([SegmentRow("t/2.mp4", "t", "main", 10.0, 20.0, 7)])
    assert [r.path for r in a.segments()] == ["t/1.mp4", "t/2.mp4"]  # listing: every node's rows
    assert a.totals() == {"t": (1, 5)} and b.totals() == {"t": (1, 7)}  # totals, retention: own rows only
    assert [r.path for r in a.oldest()] == ["t/1.mp4"] and a.live_sizes() == {"t/1.mp4": 5}
    a.delete_all_rows()  # a rebuild replaces only its own rows
    assert [r.path for r in b.segments()] == ["t/2.mp4"]
    prefixed = Catalog(save / "x", save, url=url, node_id="node-a", prefix="cctv_")
    assert prefixed.segments() == [] and prefixed.db.t.segments.name == "cctv_segments"
    for cat in (a, b, prefixed):
        cat.close()


def test_url_errors_name_the_key_and_hide_the_password(postgres_server: DatabaseServer) -> None:
    for bad, why in (("ftp://h/db", "unknown scheme"), ("postgresql:///db", "host"), ("not a url", "not a database"),
                     ("mysql://u:p@h", "database")):
        with pytest.raises(CatalogUrlError) as err:
            parse_url(bad)
        assert str(err.value).startswith("catalog.url:") and why in str(err.value)
    assert parse_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert parse_url("mariadb://u:p@h/db").drivername == "mysql+pymysql"
    secret = "Sup3r-Secret-pw"
    assert secret not in safe_url(f"postgresql://u:{secret}@h/db")
    # unreachable (nothing listens on port 1) and refused (wrong password): the message names the key, no password
    for url in (f"postgresql://cctv:{secret}@127.0.0.1:1/db",
                f"postgresql://{postgres_server.user}:{secret}@127.0.0.1:{postgres_server.port}/cctv"):
        with pytest.raises(CatalogOpenError) as open_err:
            Catalog(Path("/nonexistent/x"), Path("/nonexistent"), url=url, node_id="n")
        assert str(open_err.value).startswith("catalog.url:") and secret not in str(open_err.value)
        assert secret not in error_text(open_err.value)


def test_check_config_reports_an_unusable_catalog_url(tmp_path: Path) -> None:
    secret = "Sup3r-Secret-pw"
    base = {"cameras": [{"cameraName": "t1", "source": "test"}], "storageConfig": {"savePath": str(tmp_path)}}
    cfg = tmp_path / "config.json"
    for url, expect in (("postgresql://cctv:${CCTV_T_PW}@127.0.0.1:1/db", "cannot reach"),
                        ("oracle://cctv:${CCTV_T_PW}@h/db", "unknown scheme")):
        cfg.write_text(json.dumps({**base, "catalog": {"url": url}}))
        res = run_cli("check-config", "--config", str(cfg), env={"CCTV_T_PW": secret})
        assert res.returncode == c.EXIT_USAGE, res.stderr
        assert "catalog.url" in res.stderr and expect in res.stderr, res.stderr
        assert secret not in res.stderr + res.stdout and "Traceback" not in res.stderr


def test_table_prefix_on_an_unprefixed_sqlite_catalog_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """catalog.tablePrefix set on an install whose SQLite file has the old unprefixed tables: the catalog starts
    empty (nothing is moved), and a warning says so, naming both and what to do."""
    import structlog

    @contextlib.contextmanager
    def captured() -> Iterator[list[MutableMapping[str, Any]]]:
        """capture_logs with a fresh (lazy) logger in migrate: log_setup caches loggers on first use, and one
        cached under an earlier test's configuration (another processors list) would bypass the capture."""
        with structlog.testing.capture_logs() as logs:
            monkeypatch.setattr(migrate, "log", structlog.get_logger("cctv_daemon.catalog"))
            yield logs

    save = tmp_path / "rec"
    db = save / ".cctv" / c.CATALOG_FILENAME
    old = Catalog(db, save, node_id="n")
    old.add_rows([SegmentRow("t/1.mp4", "t", "main", 0.0, 10.0, 5), SegmentRow("t/2.mp4", "t", "main", 10.0, 20.0, 5)])
    old.close()
    with captured() as logs:
        prefixed = Catalog(db, save, node_id="n", prefix="site_")
    assert prefixed.segments() == []
    (warning,) = [e for e in logs if e["event"] == "catalog_prefix_hides_rows"]
    assert warning["rows"] == 2 and warning["prefix"] == "site_" and "Remove tablePrefix" in warning["action"]
    prefixed.add_rows([SegmentRow("t/3.mp4", "t", "main", 20.0, 30.0, 5)])
    prefixed.close()
    with captured() as logs:
        Catalog(db, save, node_id="n", prefix="site_").close()  # the prefixed catalog is in use now: no warning
    assert not [e for e in logs if e["event"] == "catalog_prefix_hides_rows"]
    with captured() as logs:
        Catalog(db, save, node_id="n").close()
    assert not [e for e in logs if e["event"] == "catalog_prefix_hides_rows"]
