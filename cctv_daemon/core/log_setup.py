"""Structured logs: one JSON object per line to stdout and to a rotating file; every value redacted.

When the stream is a terminal (someone ran `cctv-daemon run` by hand), it gets structlog's readable console
format instead; files, journald (a socket) and pipes always get JSON. Redaction runs before either renderer."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

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
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(value)
    return event_dict


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _formatter(shared: list[Any], renderer: Any) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_processor,  # last before rendering: also covers exception text
            renderer,
        ],
    )


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
    json_formatter = _formatter(shared, structlog.processors.JSONRenderer())
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
    out = logging.StreamHandler(out_stream)
    out.setFormatter(stream_formatter)
    root.addHandler(out)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
        )
        fh.setFormatter(json_formatter)
        root.addHandler(fh)
    root.setLevel(getattr(logging, level.upper()))
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
