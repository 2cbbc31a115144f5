"""What the CLI prints where, run as a user would (`python -m cctv_daemon ...` in a subprocess): data only on
stdout, messages and logs on stderr; an unknown camera is named with the known ones (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cctv_daemon.catalog.store import Catalog
from cctv_daemon.core import constants as c
from tests.support.daemon import REPO
from tests.unit.catalog_helpers import put_segment


def _config(tmp_path: Path, cameras: list[str]) -> Path:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"cameras": [{"cameraName": n, "source": "test"} for n in cameras],
                               "storageConfig": {"savePath": str(tmp_path / "rec")}}))
    return cfg


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cctv_daemon", *args, "--config", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_data_commands_print_only_data_on_stdout_on_a_fresh_folder(tmp_path: Path) -> None:
    """On a folder without a catalog, `segments --json` printed the catalog's creation log line on stdout
    before the JSON (`| jq` broke on first use)."""
    cfg = _config(tmp_path, ["yard"])
    for args, code in ((["segments", "--json"], 0), (["check", "--json"], 0), (["status", "--json"], 4),
                       (["check", "--rebuild", "--json"], 0), (["segments", "--camera", "yard", "--json"], 0)):
        res = _cli(cfg, *args)
        assert res.returncode == code, (args, res.stderr)
        json.loads(res.stdout)  # the whole of stdout is one JSON document
    for args in (["segments"], ["check"], ["check-config"], ["install-service", "--print"]):
        res = _cli(cfg, *args)
        assert res.returncode == 0, (args, res.stderr)
        assert not [line for line in res.stdout.splitlines() if line.startswith("{")], (args, res.stdout)
        assert '"event"' not in res.stdout and "catalog_" not in res.stdout, (args, res.stdout)


def test_segments_for_an_unknown_camera_names_it_and_the_known_ones(tmp_path: Path) -> None:
    cfg = _config(tmp_path, ["yard", "porch"])
    save = tmp_path / "rec"
    catalog = Catalog.for_state_dir(save / c.STATE_DIRNAME, save)
    put_segment(catalog, "oldcam", 1_795_000_000.0)  # footage of a camera no longer in the config
    catalog.close()
    res = _cli(cfg, "segments", "--camera", "gate")
    assert res.returncode == c.EXIT_USAGE, res
    assert res.stdout == ""
    assert "unknown camera 'gate'" in res.stderr and "oldcam, porch, yard" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    res = _cli(cfg, "segments", "--camera", "gate", "--json")
    assert res.returncode == c.EXIT_USAGE and res.stdout == "" and "gate" in res.stderr
    for known in ("oldcam", "porch"):  # from the catalog / from the config (no footage: still exit 0)
        res = _cli(cfg, "segments", "--camera", known, "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["totals"]["segments"] == (1 if known == "oldcam" else 0)
