"""What each CLI command imports: every `cctv-daemon` call (and tests make hundreds) used to import SQLAlchemy,
Alembic, FastAPI, uvicorn and boto3 at start (~0.8 s of CPU). Commands import only what they use; a catalog already
at this program's schema revision is opened without Alembic; `migrate.HEAD` names the newest migration script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cctv_daemon.catalog import migrate
from cctv_daemon.catalog.store import Catalog
from tests.support.daemon import child_env

HEAVY = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "boto3", "botocore", "watchdog")

# Runs a command in a fresh interpreter and reports which of HEAVY it imported (on stderr's last line).
_PROBE = """
import json, sys
from cctv_daemon.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("\\nIMPORTED " + json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _imported(tmp_path: Path, *args: str) -> tuple[object, list[str]]:
    res = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, env=child_env())
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("IMPORTED "), res.stderr
    got = json.loads(line.removeprefix("IMPORTED "))
    return got["code"], got["heavy"]


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"cameras": [{"cameraName": "cam1", "source": "test"}],
                                "storageConfig": {"savePath": str(tmp_path / "rec")}}))
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("args", [
    ("--help",), ("--version",), ("status",), ("status", "--json"), ("stop",), ("reload",), ("config-schema",),
    ("check-config",), ("ui-url",), ("api-token",), ("ack-lost",), ("install-service", "--print"),
    ("uploads", "list"),
], ids=lambda a: "_".join(a))
def test_commands_that_need_no_catalog_import_none_of_the_heavy_packages(tmp_path: Path, config: str,
                                                                        args: tuple[str, ...]) -> None:
    full = [*args] if args[0].startswith("--") or args[0] == "config-schema" else [*args, "--config", config]
    _code, heavy = _imported(tmp_path, *full)
    assert heavy == []


def test_segments_on_a_catalog_at_head_needs_sqlalchemy_but_not_alembic(tmp_path: Path, config: str) -> None:
    state = tmp_path / "rec" / ".cctv"
    Catalog(state / "catalog.sqlite3", tmp_path / "rec", node_id="n").close()  # made and migrated: at HEAD
    code, heavy = _imported(tmp_path, "segments", "--config", config)
    assert code == 0
    assert heavy == ["sqlalchemy"]


def test_head_names_the_newest_migration_script() -> None:
    assert migrate.head() == migrate.HEAD


def test_a_new_catalog_is_migrated_and_one_at_head_opens_without_alembic(tmp_path: Path) -> None:
    db = tmp_path / "catalog.sqlite3"
    code = f"""
import sys
from pathlib import Path
from cctv_daemon.catalog.store import Catalog
for read_only in (False, True):
    Catalog(Path({str(db)!r}), Path({str(tmp_path)!r}), node_id="n", read_only=read_only).close()
print("ALEMBIC", "alembic" in sys.modules)
"""
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=child_env())
    # a new catalog: made by the migrations
    assert first.stdout.strip().splitlines()[-1] == "ALEMBIC True", first.stderr
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=child_env())
    # at HEAD: nothing to migrate, Alembic not loaded
    assert again.stdout.strip().splitlines()[-1] == "ALEMBIC False", again.stderr
