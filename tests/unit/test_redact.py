from __future__ import annotations

import io
import json
import logging

import structlog

from cctv_daemon.core.log_setup import setup_logging
from cctv_daemon.core.redact import redact, register_secrets


def test_url_userinfo_is_redacted() -> None:
    assert redact("rtsp://admin:hunter2@10.0.0.1/live") == "rtsp://admin:***@10.0.0.1/live"
    assert redact("open 'rtsps://u:p%40ss@h:322/x' failed") == "open 'rtsps://u:***@h:322/x' failed"
    assert redact("http://host/path") == "http://host/path"


def test_registered_secrets_are_redacted_anywhere() -> None:
    register_secrets(["AKIAEXAMPLEKEY123", "wJalrXUtnFEMI/K7MDENG"])
    assert redact("key AKIAEXAMPLEKEY123 secret=wJalrXUtnFEMI/K7MDENG") == "key *** secret=***"


def test_log_lines_and_exceptions_are_redacted() -> None:
    register_secrets(["T0p-Secret-Pw"])
    buf = io.StringIO()
    setup_logging("debug", None, stream=buf)
    log = structlog.get_logger("test")
    log.info("connecting", url="rtsp://admin:T0p-Secret-Pw@cam/1", args=["-i", "rtsp://a:T0p-Secret-Pw@b"])
    try:
        raise RuntimeError("failed for rtsp://admin:T0p-Secret-Pw@cam/1")
    except RuntimeError:
        log.exception("boom")
    logging.getLogger("foreign").warning("stdlib says T0p-Secret-Pw")
    text = buf.getvalue()
    assert "T0p-Secret-Pw" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["url"] == "rtsp://admin:***@cam/1"
    assert "***" in lines[1]["exception"]
    assert lines[2]["event"] == "stdlib says ***"
