"""Runs each atheris target of tests/fuzz/targets.py in its own process (atheris.Fuzz() ends its process): a few
seconds each in the default suite, >= 60 s each under `-m fuzz`. A failure leaves the crashing input in tmp_path
and its traceback in the assertion message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import REPO, child_env

pytest.importorskip("atheris", reason="atheris (test extra) is not installed")

TARGETS = ["mp4_tail", "segment_list", "run_meta", "recovery"]
SEEDS = {
    "segment_list": [b"r20261121T100000Z-abcdef_000000.mp4,0.000000,10.000000\n",
                     b"r20261121T100000Z-abcdef_000001.mp4,10.0,20.5\nr20261121T100000Z-abcdef_000002.mp4,20.5,21"],
    "run_meta": [b'{"camera": "gate", "feedId": "main", "anchor": 1795000000.25}', b'{"camera": "g", "feedId": "m"}'],
}


def fuzz(target: str, seconds: int, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(SEEDS.get(target, [])):
        (corpus / f"seed{i}").write_bytes(seed)
    r = subprocess.run([sys.executable, "-m", "tests.fuzz.targets", target, f"-max_total_time={seconds}",
                        f"-artifact_prefix={tmp_path}/", "-rss_limit_mb=1024", str(corpus)],
                       cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=seconds + 120,
                       check=False)
    assert r.returncode == 0, f"{target}: {r.stderr[-4000:]}"
    assert "Done" in r.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_quick(target: str, tmp_path: Path) -> None:
    fuzz(target, 3, tmp_path)


@pytest.mark.fuzz
@pytest.mark.timeout(400)
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_long(target: str, tmp_path: Path) -> None:
    fuzz(target, 60, tmp_path)
