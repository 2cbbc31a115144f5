"""Log format by destination: a terminal gets structlog's console format, files and pipes get JSON; both are
redacted. The terminal is a real pseudo-terminal (pty), not a mock."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
from pathlib import Path

import pytest
import structlog

from cctv_daemon.core.log_setup import is_terminal, setup_logging
from cctv_daemon.core.redact import register_secrets

SECRET = "Pty-S3cret-Pw"


def _emit() -> None:
    log = structlog.get_logger("test.tty")
    log.info("connecting", url=f"rtsp://admin:{SECRET}@cam/1", note=f"password is {SECRET}")
    try:
        raise RuntimeError(f"failed for rtsp://admin:{SECRET}@cam/1")
    except RuntimeError:
        log.exception("boom")
    logging.getLogger("foreign").warning("stdlib says %s", SECRET)
    for handler in logging.getLogger().handlers:
        handler.flush()


def _read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture
def terminal() -> object:
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w", encoding="utf-8", buffering=1)
    yield master, stream
    stream.close()
    os.close(master)
    logging.getLogger().handlers.clear()


def test_terminal_gets_console_format_and_file_stays_json_both_redacted(
    terminal: tuple[int, io.TextIOWrapper], tmp_path: Path
) -> None:
    register_secrets([SECRET])
    master, stream = terminal
    assert is_terminal(stream)
    log_file = tmp_path / "logs" / "d.log"
    setup_logging("info", log_file, stream=stream)
    _emit()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", _read_all(master))  # without the colours
    assert "connecting" in shown and "boom" in shown and "RuntimeError" in shown, shown
    assert SECRET not in shown
    assert "rtsp://admin:***@cam/1" in shown and "password is ***" in shown and "stdlib says ***" in shown
    first = shown.strip().splitlines()[0]
    with pytest.raises(ValueError):
        json.loads(first)  # a console line, not JSON
    assert "[info" in first and "connecting" in first
    written = log_file.read_text()
    assert SECRET not in written
    lines = [json.loads(line) for line in written.splitlines()]  # the file: one JSON object per line
    assert [e["event"] for e in lines] == ["connecting", "boom", "stdlib says ***"]
    assert "***" in lines[1]["exception"]


def test_pipe_gets_json(tmp_path: Path) -> None:
    register_secrets([SECRET])
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w", encoding="utf-8")
    try:
        assert not is_terminal(stream)
        setup_logging("info", None, stream=stream)
        _emit()
    finally:
        stream.close()
        logging.getLogger().handlers.clear()
    with os.fdopen(read_fd, encoding="utf-8") as f:
        text = f.read()
    assert SECRET not in text
    events = [json.loads(line)["event"] for line in text.splitlines()]
    assert events == ["connecting", "boom", "stdlib says ***"]


def test_a_line_is_rendered_once_for_the_stream_the_file_and_its_rollover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON on the stream and in the file: the same line, rendered once (the rollover check used to render it a
    second time, the file handler a third); rotation still happens at maxBytes; secrets and URL passwords are still
    hidden in every value, numbers, booleans and None are kept as they are."""
    register_secrets([SECRET])
    rendered: list[str] = []
    real = structlog.processors.JSONRenderer.__call__

    def counting(self: structlog.processors.JSONRenderer, *a: object) -> str:
        text = str(real(self, *a))  # type: ignore[arg-type]
        rendered.append(text)
        return text

    monkeypatch.setattr(structlog.processors.JSONRenderer, "__call__", counting)
    out = io.StringIO()
    log_file = tmp_path / "logs" / "d.log"
    setup_logging("info", log_file, max_bytes=2048, backup_count=2, stream=out)
    try:
        log = structlog.get_logger("test.once")
        for i in range(12):
            log.info("segment_finished", camera="cam", path=f"/rec/cam/{i}.mp4", start_at=1.5 + i, bytes=10**9,
                     recovered=False, clamped=None, url=f"rtsp://admin:{SECRET}@cam/1", note=[SECRET, 3])
        for handler in logging.getLogger().handlers:
            handler.flush()
    finally:
        logging.getLogger().handlers.clear()
    assert len(rendered) == 12  # one rendering per line for both handlers and the rollover check
    stream_lines = out.getvalue().splitlines()
    file_lines = [ln for p in sorted(tmp_path.glob("logs/d.log*"), reverse=True) for ln in p.read_text().splitlines()]
    assert stream_lines == file_lines  # the same text, every line, in order across the rotated files
    assert (tmp_path / "logs" / "d.log.1").exists()  # rotated at 2 KiB
    first = json.loads(stream_lines[0])
    assert first["url"] == "rtsp://admin:***@cam/1" and first["note"] == ["***", 3]
    assert (first["start_at"], first["bytes"], first["recovered"], first["clamped"]) == (1.5, 10**9, False, None)
    assert first["level"] == "info" and first["logger"] == "test.once" and "timestamp" in first
    assert SECRET not in out.getvalue()


class _StockCopy(logging.Handler):
    """Renders each record, as it is logged, with structlog's own ProcessorFormatter built from the same chain as
    the handler `ours`'s formatter: what the lines were before the direct rendering."""

    def __init__(self, ours: logging.Handler) -> None:
        super().__init__()
        fmt = ours.formatter
        assert isinstance(fmt, structlog.stdlib.ProcessorFormatter)
        processors = list(fmt.processors)
        if isinstance(processors[-1], structlog.processors.JSONRenderer):
            processors[-1] = structlog.processors.JSONRenderer()  # structlog's own json.dumps call
        self.stock = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=fmt.foreign_pre_chain,
                                                         processors=processors)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.stock.format(record))


def _log_a_bit(log_file: Path | None) -> None:
    log = structlog.get_logger("cctv_daemon.finisher")
    log.info("segment_finished", camera="cam 1", path="/rec/cam 1/2026-11-30/cam 1_x.mp4", feed="main",
             start="2026-11-30T00:00:00.000+00:00", end="2026-11-30T00:00:10.000+00:00", duration=10.0,
             media_duration=9.98, bytes=820_000, recovered=False, clamped=None, late_s=0.0, run="r1",
             url=f"rtsp://admin:{SECRET}@cam/1", note=[SECRET, 3, {"k": f"x {SECRET}", "n": 1.5}], text="ünï \"q\"")
    structlog.get_logger("test.bound").bind(camera="c2").warning("stalled", seconds=2.5)
    try:
        raise RuntimeError(f"failed for rtsp://admin:{SECRET}@cam/1")
    except RuntimeError:
        log.exception("boom", camera="cam")
    logging.getLogger("foreign").warning("stdlib says %s and %d%%", SECRET, 5)
    for handler in logging.getLogger().handlers:
        handler.flush()


@pytest.mark.parametrize("console", [False, True])
def test_lines_are_byte_identical_to_structlogs_own_formatter_on_every_sink(tmp_path: Path, console: bool) -> None:
    """The direct rendering of structlog lines (no record copy, no logging.Formatter pass, the JSON encoder built
    once) writes exactly what structlog's ProcessorFormatter and JSONRenderer wrote, to the stream and to the file,
    JSON and console format, with an exception and a foreign stdlib line; ProcessorFormatter.format itself runs
    only for the foreign line."""
    register_secrets([SECRET])
    out = io.StringIO()
    log_file = tmp_path / "logs" / "d.log"
    setup_logging("info", log_file, stream=out, console=console)
    root = logging.getLogger()
    stream_h, file_h = root.handlers
    stock_stream, stock_file = _StockCopy(stream_h), _StockCopy(file_h)
    root.handlers[:0] = [stock_stream, stock_file]  # first: each record as it is logged (the exception is current)
    seen: list[str] = []
    real = structlog.stdlib.ProcessorFormatter.format

    def counting(self: structlog.stdlib.ProcessorFormatter, record: logging.LogRecord) -> str:
        if self not in (stock_stream.stock, stock_file.stock):
            seen.append(record.getMessage())
        return real(self, record)

    try:
        structlog.stdlib.ProcessorFormatter.format = counting  # type: ignore[method-assign]
        _log_a_bit(log_file)
    finally:
        structlog.stdlib.ProcessorFormatter.format = real  # type: ignore[method-assign]
        root.handlers.clear()
    assert len(stock_stream.lines) == 4
    # The foreign line is stamped when it is rendered (foreign_pre_chain), so each rendering has its own time:
    # its stamp aside, it must match too. The structlog lines carry their stamp: every byte must match.
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")
    for got, stock in ((out.getvalue(), stock_stream.lines), (log_file.read_text(encoding="utf-8"), stock_file.lines)):
        assert got.startswith("".join(f"{line}\n" for line in stock[:3]))
        assert stamp.sub("T", got) == stamp.sub("T", "".join(f"{line}\n" for line in stock))
    assert SECRET not in out.getvalue() and SECRET not in log_file.read_text(encoding="utf-8")
    assert "Traceback" in out.getvalue() and ("segment_finished" in stock_stream.lines[0])
    assert len(seen) == (2 if console else 1)  # the foreign line only, once per formatter (JSON: one for both)
