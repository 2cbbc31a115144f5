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


def _hide_password(m: re.Match[str]) -> str:
    return f"{m['scheme']}{m['user']}:{REDACTED}@"


def redact(text: str) -> str:
    """Return ``text`` with URL passwords and every registered secret replaced by ***."""
    if not text:
        return text
    # The pattern needs "://" and a later "@": most strings (paths, names) have neither; skip the regex then.
    out = _URL_USERINFO.sub(_hide_password, text) if "@" in text and "://" in text else text
    for secret in _secrets:
        if secret in out:
            out = out.replace(secret, REDACTED)
    return out


def redact_args(args: Iterable[str]) -> list[str]:
    return [redact(a) for a in args]
