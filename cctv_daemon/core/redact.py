"""Credential redaction for every string that leaves the process (logs, printed commands, errors)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

from cctv_daemon.core.constants import REDACTED

# scheme://user:password@host  ->  scheme://user:***@host
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]*)@")

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secrets(secrets: Iterable[str]) -> None:
    """Add secret values that must never appear anywhere (passwords, keys)."""
    global _secrets
    with _lock:
        merged = set(_secrets) | {s for s in secrets if s and len(s) >= 3}
        # Longest first so that a secret containing another is replaced whole.
        _secrets = tuple(sorted(merged, key=len, reverse=True))


def redact(text: str) -> str:
    """Return ``text`` with URL passwords and every registered secret replaced by ***."""
    if not text:
        return text
    out = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    for secret in _secrets:
        if secret in out:
            out = out.replace(secret, REDACTED)
    return out


def redact_args(args: Iterable[str]) -> list[str]:
    return [redact(a) for a in args]
