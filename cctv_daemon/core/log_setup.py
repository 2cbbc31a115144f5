"""Structured logs: one JSON object per line to stdout and to a rotating file; every value redacted.

When the stream is a terminal (someone ran `cctv-daemon run` by hand), it gets structlog's readable console
format instead; files, journald (a socket) and pipes always get JSON. Redaction runs before either renderer.

A full disk (ENOSPC, quota) under the log file or stdout never prints `--- Logging error ---` tracebacks: the
handler drops the line and counts it, says so once (`log_lines_dropping`, to the other handlers), and when a line
can be written again says how many were dropped (`log_lines_dropped`) and carries on."""

from __future__ import annotations

import errno
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, cast

import structlog

from cctv_daemon.core.redact import redact


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


def redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():  # values replaced in place: the keys do not change
        if type(value) in _PLAIN:
            continue  # numbers, booleans, None: nothing to hide (the common case, checked first)
        event_dict[key] = redact(value) if isinstance(value, str) else _redact_value(value)
    return event_dict


_PLAIN = frozenset({int, float, bool, type(None)})


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


_META = structlog.stdlib.ProcessorFormatter.remove_processors_meta


class _RenderOnce(structlog.stdlib.ProcessorFormatter):
    """Renders a record once: the stream handler, the file handler and the file's rollover check (the standard
    library's RotatingFileHandler.shouldRollover formats the record a second time to learn its length) share one
    formatter and so one rendering (a third of the cost of each log line each, docs/benchmarks.md).

    A structlog line (an event dict wrapped by `wrap_for_formatter`) is rendered here directly: ProcessorFormatter
    would copy the record (a second LogRecord per line), put `_record`/`_from_structlog` into the event dict for
    `remove_processors_meta` to take out again, and pass the text through logging.Formatter's "%(message)s",
    which returns it unchanged (its copy's exception and stack fields are cleared). Same processors, same text
    (tests/unit/test_log_setup.py compares it with ProcessorFormatter's); other records take ProcessorFormatter's
    own way."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._direct = tuple(p for p in self.processors if p is not _META)
        # The direct way reproduces ProcessorFormatter.format only for what _formatter() builds.
        assert self.logger is None and self._fmt == "%(message)s" and not self.keep_exc_info
        assert not self.keep_stack_info and len(self._direct) == len(self.processors) - 1

    def format(self, record: logging.LogRecord) -> str:
        attrs = record.__dict__
        cached = attrs.get("_cctv_rendered")
        if cached is not None and cached[0] is self:
            return cast(str, cached[1])
        logger, name = attrs.get("_logger"), attrs.get("_name")
        ed: Any = record.msg
        if logger is not None and name is not None and type(ed) is dict:
            ed = ed.copy()  # another formatter may render the same event dict
            for proc in self._direct:
                ed = proc(logger, name, ed)
            text = ed if type(ed) is str else super().format(record)
        else:
            text = super().format(record)
        record._cctv_rendered = (self, text)  # type: ignore[attr-defined]  # read back just above
        return text


_ENCODERS: dict[Any, json.JSONEncoder] = {}


def _dumps(obj: Any, *, default: Any) -> str:
    """json.dumps(obj, default=default) with the encoder built once: json.dumps builds a new JSONEncoder for every
    call given an option, and structlog's JSONRenderer always passes `default` (its fallback). Same text."""
    encoder = _ENCODERS.get(default)
    if encoder is None:
        encoder = _ENCODERS[default] = json.JSONEncoder(default=default)
    return encoder.encode(obj)


def _formatter(shared: list[Any], renderer: Any) -> logging.Formatter:
    return _RenderOnce(
        foreign_pre_chain=shared,
        processors=[
            _META,
            structlog.processors.format_exc_info,
            redact_processor,  # last before rendering: also covers exception text
            renderer,
        ],
    )


_TAIL = 65536  # a log line is shorter than this
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_notice_log = structlog.get_logger("cctv_daemon.logging")


class _FullDiskTolerant(logging.StreamHandler):  # type: ignore[type-arg]
    """Mixed into the stream and file handlers: lines that meet a full disk are dropped and counted."""

    dropped = 0  # lines lost in the current full-disk episode
    dropped_total = 0
    _in_notice = False
    _failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._in_notice and self.dropped:
            return  # our own "dropping" notice is for the other handlers
        self._failed = False
        self._write(record)
        if not self._failed and self.dropped:
            n, self.dropped = self.dropped, 0
            self._notice("log_lines_dropped", count=n, detail="the disk had no room; logging resumed")

    def _write(self, record: logging.LogRecord) -> None:
        """StreamHandler.emit with its flush() inlined (the handler's lock is held already: handle() took it)."""
        try:
            stream = self.stream
            stream.write(self.format(record) + self.terminator)
            flush = getattr(stream, "flush", None)
            if flush is not None:
                flush()
        except RecursionError:  # as StreamHandler.emit (issue 36272)
            raise
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not (isinstance(exc, OSError) and exc.errno in _FULL):
            super().handleError(record)
            return
        self._failed = True
        self.dropped += 1
        self.dropped_total += 1
        self._discard_buffer()
        if self.dropped == 1:
            self._notice("log_lines_dropping",
                         detail="no room on the disk: log lines are dropped and counted until it has room")

    def _discard_buffer(self) -> None:
        pass

    def _target(self) -> str:
        return str(getattr(self.stream, "name", "stream"))

    def _notice(self, event: str, **kw: object) -> None:
        if self._in_notice:
            return
        self._in_notice = True
        try:
            _notice_log.warning(event, target=self._target(), **kw)
        finally:
            self._in_notice = False


class SafeStreamHandler(_FullDiskTolerant):
    pass


class SafeRotatingFileHandler(_FullDiskTolerant, logging.handlers.RotatingFileHandler):
    def _discard_buffer(self) -> None:
        """Close the stream, losing what its buffer held, and cut the line the disk tore (a short write), so the
        file holds whole lines only; the next line reopens the file."""
        stream, self.stream = self.stream, None  # type: ignore[assignment]
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
        try:
            with open(self.baseFilename, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - _TAIL))
                tail = f.read()
                if tail and not tail.endswith(b"\n"):
                    cut = tail.rfind(b"\n")
                    f.truncate(size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))
        except OSError:
            pass

    def _target(self) -> str:
        return self.baseFilename

    def _write(self, record: logging.LogRecord) -> None:
        """BaseRotatingHandler.emit and FileHandler.emit in one (the same steps: rollover, reopen, write)."""
        try:
            if self.shouldRollover(record):
                self.doRollover()
            if self.stream is None and (self.mode != "w" or not getattr(self, "_closed", False)):
                self.stream = self._open()
            if self.stream:
                super()._write(record)
        except Exception:
            self.handleError(record)

    _regular = True  # the log file is a regular file (not /dev/null, a FIFO): only such files are rotated

    def _open(self) -> Any:
        stream = super()._open()
        self._regular = os.path.isfile(self.baseFilename)
        return stream

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        """The standard library's check without its two stat() calls per line (bpo-45401: never roll over
        anything but a regular file; checked when the file is opened) and with the line rendered once."""
        if self.stream is None:  # closed after a full disk, or delay
            self.stream = self._open()
        if self.maxBytes <= 0 or not self._regular:
            return False
        msg = f"{self.format(record)}\n"
        self.stream.seek(0, 2)
        return bool(self.stream.tell() + len(msg) >= self.maxBytes)


def dropped_lines() -> int:
    """Log lines dropped on a full disk since logging was set up (all handlers)."""
    return sum(h.dropped_total for h in logging.getLogger().handlers if isinstance(h, _FullDiskTolerant))


def setup_logging(
    level: str = "info",
    file: Path | None = None,
    max_bytes: int = 10_485_760,
    backup_count: int = 5,
    stream: Any = None,
    console: bool | None = None,
) -> None:
    """Log to ``stream`` (default stdout) and, if given, to a rotating ``file`` (always JSON). The stream gets
    the console format when ``console`` is True, or (None) when it is a terminal; JSON otherwise."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    out_stream = stream or sys.stdout
    json_formatter = _formatter(shared, structlog.processors.JSONRenderer(serializer=_dumps))
    if console is None:
        console = is_terminal(out_stream)
    if console:
        colors = is_terminal(out_stream) and not os.environ.get("NO_COLOR") and sys.platform != "win32"
        stream_formatter = _formatter(shared, structlog.dev.ConsoleRenderer(colors=colors))
    else:
        stream_formatter = json_formatter
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    out = SafeStreamHandler(out_stream)
    out.setFormatter(stream_formatter)
    root.addHandler(out)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        fh = SafeRotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
        )
        fh.setFormatter(json_formatter)
        root.addHandler(fh)
    root.setLevel(getattr(logging, level.upper()))
    # Neither renderer shows the caller's file/line nor the process: the logging HOWTO's "Optimization" switches
    # spare each line a walk up the stack and the process lookups (docs/benchmarks.md, sixth CPU pass).
    logging._srcfile = None  # type: ignore[attr-defined]  # documented there as the way to skip findCaller
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
