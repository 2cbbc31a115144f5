"""CLI behaviours found by an acceptance audit of the issues' words: a read command never answers with a
traceback (a damaged catalog, a reader that closes the pipe early), and bad usage is exit 2 whatever the state
of the catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.daemon import child_env, pattern_camera, run_cli


def _config(tmp_path: Path, **storage: object) -> Path:
    cfg = {"cameras": [pattern_camera("cam1")], "storageConfig": {"savePath": str(tmp_path / "rec"), **storage},
           "api": {"enabled": False}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def _damaged_catalog(tmp_path: Path) -> Path:
    state = tmp_path / "rec" / ".cctv"
    state.mkdir(parents=True)
    catalog = state / "catalog.sqlite3"
    catalog.write_bytes(b"this is not a database" * 400)
    return catalog


def test_read_commands_on_a_damaged_catalog_say_so_without_a_traceback(tmp_path: Path) -> None:
    """Issue 12 finding 5 / "Read commands never write": a corrupt catalog file (the daemon moves it aside at its
    next start) must not make `segments`, `check` or `export` crash with a traceback; they name the file, say what
    to do, exit 1, and leave the file as it is."""
    cfg = _config(tmp_path)
    catalog = _damaged_catalog(tmp_path)
    before = catalog.read_bytes()
    commands = (["segments"], ["segments", "--json"], ["check"], ["check", "--json"],
                ["export", "--camera", "cam1", "--from", "2026-11-29T10:00", "--to", "2026-11-29T10:05",
                 "-o", str(tmp_path / "clip.mp4")])
    for args in commands:
        res = run_cli(*args, "--config", str(cfg))
        assert "Traceback" not in res.stderr, (args, res.stderr)
        assert res.returncode == 1, (args, res.returncode, res.stderr)
        assert res.stdout == "", (args, res.stdout)
        assert str(catalog) in res.stderr and "damaged" in res.stderr, (args, res.stderr)
        assert "check --rebuild" in res.stderr, (args, res.stderr)
    assert catalog.read_bytes() == before
    assert sorted(p.name for p in catalog.parent.iterdir()) == ["catalog.sqlite3"]


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback(tmp_path: Path) -> None:
    """`cctv-daemon uploads list | head -1` printed a `BrokenPipeError` traceback: any data command piped into a
    reader that stops early ends quietly with 141 (128 + SIGPIPE, what a shell shows for `cat`)."""
    cfg = _config(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes anything: every write is EPIPE
    try:
            results = [subprocess.run([sys.executable, "-m", "cctv_daemon", *args, "--config", str(cfg)],
                                  stdout=write_end, stderr=subprocess.PIPE, env=child_env(), timeout=60, check=False)
                   for args in (["segments"], ["segments", "--json"], ["check"], ["config-schema"])]
    finally:
        os.close(write_end)
    for proc in results:
        err = proc.stderr.decode()
        assert "Traceback" not in err and "BrokenPipeError" not in err, (proc.args, err)
        assert proc.returncode == 141, (proc.args, proc.returncode)  # it did not get its data out


def test_export_with_the_end_before_the_start_is_usage_even_without_a_catalog(tmp_path: Path) -> None:
    """docs/cli.md: `--to` not after `--from` is exit 2; on a folder without a catalog it said "no footage",
    exit 1."""
    cfg = _config(tmp_path)
    res = run_cli("export", "--camera", "cam1", "--from", "2026-11-29T10:05", "--to", "2026-11-29T10:00",
                  "-o", str(tmp_path / "clip.mp4"), "--config", str(cfg))
    assert res.returncode == 2, res.stderr
    assert "after its start" in res.stderr
    assert not (tmp_path / "rec").exists()


def _s3_config(tmp_path: Path) -> Path:
    cfg = json.loads(_config(tmp_path).read_text())
    cfg["s3Config"] = {"s3Bucket": "audit-bucket", "endpointUrl": "http://127.0.0.1:9"}
    cfg["awsCredentials"] = {"accessKeyId": "testing", "secretAccessKey": "testing", "region": "us-east-1"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


def test_uploads_list_reads_a_damaged_catalog_without_replacing_it(tmp_path: Path) -> None:
    """`uploads list` is a read command: on a damaged catalog it moved the file aside and created an empty catalog
    (no rows rebuilt), so `segments` then showed nothing. It must say so (exit 1) and leave the file."""
    cfg = _s3_config(tmp_path)
    catalog = _damaged_catalog(tmp_path)
    before = catalog.read_bytes()
    res = run_cli("uploads", "list", "--config", str(cfg))
    assert "Traceback" not in res.stderr
    assert res.returncode == 1, res.stderr
    assert "damaged" in res.stderr and str(catalog) in res.stderr
    assert catalog.read_bytes() == before
    assert sorted(p.name for p in catalog.parent.iterdir()) == ["catalog.sqlite3"]


def test_uploads_list_writes_nothing(tmp_path: Path) -> None:
    """Read commands never write (issue 12, finding 9): `uploads list` on a closed catalog changes no file of the
    state folder and creates none (as root before the service's start, a -wal/-shm would be root-owned)."""
    from cctv_daemon.catalog.store import Catalog
    from cctv_daemon.upload.queue import UploadQueue

    cfg = _s3_config(tmp_path)
    state = tmp_path / "rec" / ".cctv"
    state.mkdir(parents=True)
    catalog = Catalog(state / "catalog.sqlite3", tmp_path / "rec")
    queue = UploadQueue(catalog.db)
    queue.enqueue("cam1/2026-11-29/cam1_main_20261129T100000Z_20261129T100001Z.mp4", "cam1", 1795946400.0, 10,
                  "cam1/2026/11/29/cam1_main_20261129T100000Z_20261129T100001Z.mp4", 1795946401.0)
    catalog.close()
    files = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in state.iterdir()}
    res = run_cli("uploads", "list", "--state", "pending", "--config", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "cam1_main_20261129T100000Z_20261129T100001Z.mp4" in res.stdout
    assert {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in state.iterdir()} == files
