"""Finding 15: logging to a file on a full disk printed a `--- Logging error ---` traceback per line. Now lines
are dropped and counted, one notice goes to the other handlers, and logging resumes when space returns.
A real full disk: a 2 MiB tmpfs filled to ENOSPC."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from cctv_daemon.core.log_setup import dropped_lines, setup_logging
from tests.support.tmpfs import fill, tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "2m") as d:
        yield d


def test_log_file_on_full_disk_drops_counts_and_resumes(small_disk: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log_file = small_disk / "logs" / "cctv-daemon.log"
    out = io.StringIO()
    setup_logging("info", log_file, stream=out)
    try:
        log = structlog.get_logger("cctv_daemon.test")
        log.info("before_full")
        fill(small_disk / "filler")
        for i in range(60):
            log.info("while_full", i=i, pad="x" * 200)
        err = capfd.readouterr().err
        assert "Logging error" not in err and "Traceback" not in err
        notices = [json.loads(x) for x in out.getvalue().splitlines() if "log_lines_dropping" in x]
        assert len(notices) == 1 and notices[0]["target"] == str(log_file)
        assert sum('"while_full"' in x for x in out.getvalue().splitlines()) == 60  # stdout kept everything
        dropped = dropped_lines()
        assert dropped >= 40  # the first few may fit in the file's last, partly used block
        (small_disk / "filler").unlink()
        log.info("after_space")
        text = log_file.read_text()
        assert '"before_full"' in text and '"after_space"' in text
        resumed = [json.loads(x) for x in text.splitlines() if "log_lines_dropped" in x]
        assert len(resumed) == 1 and resumed[0]["count"] == dropped
        assert all(json.loads(x) for x in text.splitlines())  # no torn line: every line is whole JSON
        assert sum('"while_full"' in x for x in text.splitlines()) + dropped == 60  # each line: kept or counted
        assert "Logging error" not in capfd.readouterr().err
    finally:
        setup_logging("info", None, stream=io.StringIO())
        logging.getLogger().handlers.clear()
