"""Generic machinery of the config validator: a path-tracking error collector, typed getters and did-you-mean.

Every getter reports a problem to the :class:`Collector` (one line, starting with the JSON path) and returns
the default, so that validation goes on and every error of a file is found in one pass. Values of secret keys
never appear in a message; URLs appear with their password replaced by ``***``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REDACTED = "***"
TOP_LEVEL = "(top level)"
# Keys whose value is never shown in an error message.
SECRET_KEYS = frozenset({"password", "secretAccessKey", "sessionToken", "accessKeyId"})
# Keys whose value is shown with the URL's password redacted.
URL_KEYS = frozenset({"url", "endpointUrl"})
# Keys whose string value may reference environment variables: "${NAME}", whole or embedded.
ENV_KEYS = frozenset({"password", "userName", "url", "accessKeyId", "secretAccessKey", "sessionToken"})
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MIN_SCRUB_LEN = 4  # shorter secrets are not scrubbed from messages (they would garble them)


def join(parent: str, key: str) -> str:
    """The JSON path of ``key`` inside the object at ``parent`` ("" is the top level)."""
    return f"{parent}.{key}" if parent else key


def redact_url(url: str) -> str:
    """``url`` with the password of its user-info part replaced by ``***`` (errs on the side of hiding)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at < 0:
        return url
    userinfo, hostpart = rest[:at], rest[at + 1 :]
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + REDACTED
    return f"{scheme}{sep}{userinfo}@{hostpart}"


def url_password(url: str) -> str | None:
    """The password inside ``url``'s user-info part, if any (for scrubbing)."""
    rest = url.partition("://")[2] or url
    at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return None
    return rest[:at].split(":", 1)[1] or None


def describe(value: Any, key: str = "") -> str:
    """A short, safe rendering of a JSON value for "(got ...)": secrets show only their kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if key in SECRET_KEYS:
        return "a string" if isinstance(value, str) else kind(value)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        shown = redact_url(value) if key in URL_KEYS else value
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return json.dumps(shown, ensure_ascii=False)
    return kind(value)


def kind(value: Any) -> str:
    """The JSON kind of ``value`` with an article: "an object", "a list", "a number"..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def did_you_mean(word: str, options: Iterable[str]) -> str | None:
    """The option closest to ``word`` (case-insensitive first), or None."""
    opts = list(options)
    lowered = {o.casefold(): o for o in opts}
    if word.casefold() in lowered:
        return lowered[word.casefold()]
    close = difflib.get_close_matches(word.casefold(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def fmt_num(x: float) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


class Collector:
    """Collects error lines ("path: message") and the secret values met, for scrubbing."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.secrets: set[str] = set()

    def add(self, path: str, message: str) -> None:
        self.errors.append(f"{path or TOP_LEVEL}: {message}")

    def secret(self, value: str | None) -> None:
        if value:
            self.secrets.add(value)

    def scrubbed(self) -> list[str]:
        """The errors, with any secret value met replaced by ``***`` (defence in depth)."""
        secrets = sorted((s for s in self.secrets if len(s) >= _MIN_SCRUB_LEN), key=len, reverse=True)
        out = []
        for line in self.errors:
            for s in secrets:
                line = line.replace(s, REDACTED)
            out.append(line)
        return out


class Obj:
    """A JSON object at a JSON path, checked against its known keys; typed getters report to the collector."""

    def __init__(self, col: Collector, path: str, data: dict[str, Any], known: Sequence[str]) -> None:
        self.col = col
        self.path = path
        self.data = data
        for key in data:
            if key not in known:
                hint = did_you_mean(key, known)
                col.add(join(path, key), f'unknown key (did you mean "{hint}"?)' if hint else "unknown key")

    # -- plumbing ---------------------------------------------------------------------------------------
    def at(self, key: str) -> str:
        return join(self.path, key)

    def err(self, key: str, message: str) -> None:
        self.col.add(self.at(key), message)

    def has(self, key: str) -> bool:
        """``key`` is present (even as null)."""
        return key in self.data

    def given(self, key: str) -> bool:
        """``key`` is present and not null."""
        return self.data.get(key) is not None

    def _bad(self, key: str, expected: str, value: Any) -> None:
        self.err(key, f"must be {expected} (got {describe(value, key)})")

    # -- objects ----------------------------------------------------------------------------------------
    def obj(self, key: str, known: Sequence[str], *, required: bool = False) -> Obj | None:
        """The sub-object at ``key``; None when absent (error if required), null, or not an object."""
        if key not in self.data or (self.data[key] is None and not required):
            if required:
                self.err(key, "required")
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            self._bad(key, "an object", value)
            return None
        return Obj(self.col, self.at(key), value, known)

    # -- strings ----------------------------------------------------------------------------------------
    def _string(self, key: str, value: Any, allow_empty: bool) -> str | None:
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            self._bad(key, "a string" if allow_empty else "a non-empty string", value)
            return None
        text: str = value
        if key in ENV_KEYS and "${" in text:
            expanded = self._expand_env(key, text)
            if expanded is None:
                return None
            text = expanded
            if not allow_empty and not text.strip():
                self.err(key, "must be a non-empty string (empty after environment substitution)")
                return None
        if key in SECRET_KEYS:
            self.col.secret(text)
        elif key in URL_KEYS:
            self.col.secret(url_password(text))
        return text

    def _expand_env(self, key: str, value: str) -> str | None:
        missing = [name for name in _ENV_REF.findall(value) if name not in os.environ]
        for name in dict.fromkeys(missing):
            self.err(key, f'environment variable "{name}" is not set')
        if missing:
            return None
        return _ENV_REF.sub(lambda m: os.environ[m.group(1)], value)

    def req_str(self, key: str, *, allow_empty: bool = False) -> str | None:
        """A required string; None (after reporting) when absent or invalid."""
        if key not in self.data:
            self.err(key, "required")
            return None
        return self._string(key, self.data[key], allow_empty)

    def opt_str(self, key: str, default: T, *, allow_empty: bool = False) -> str | T:
        """An optional string; null is accepted (as the default) only when the default is None."""
        if key not in self.data or (self.data[key] is None and default is None):
            return default
        value = self._string(key, self.data[key], allow_empty)
        return default if value is None else value

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str | None:
        """One of ``choices``; the default when absent; None (after reporting) when invalid."""
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, str) and value in choices:
            return str(value)
        listed = ", ".join(f'"{c}"' for c in choices)
        hint = did_you_mean(value, choices) if isinstance(value, str) else None
        extra = f'; did you mean "{hint}"?' if hint else ""
        self.err(key, f"must be one of {listed} (got {describe(value, key)}{extra})")
        return None

    def path_value(self, key: str, base: Path, *, required: bool = False) -> Path | None:
        """A filesystem path: ``~`` expanded, relative paths resolved against ``base``."""
        raw = self.req_str(key) if required else self.opt_str(key, None)
        if raw is None:
            return None
        p = Path(raw).expanduser()
        return p if p.is_absolute() else base / p

    # -- booleans and numbers ---------------------------------------------------------------------------
    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            self._bad(key, "a boolean (true or false)", value)
            return default
        return value

    def integer(self, key: str, default: T, *, ge: int | None = None, le: int | None = None) -> int | T:
        """An int (never a bool or a float) with bounds; null accepted only when the default is None."""
        if key not in self.data or (self.data[key] is None and default is None):
            return default
        value = self.data[key]
        expected = _bound_text("integer", None, ge)
        if isinstance(value, bool) or not isinstance(value, int) or (ge is not None and value < ge):
            self._bad(key, expected, value)
            return default
        if le is not None and value > le:
            self.err(key, f"must be at most {le} (got {describe(value, key)})")
            return default
        return value

    def number(
        self,
        key: str,
        default: T,
        *,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
    ) -> float | T:
        """A finite int or float (never a bool) with bounds; null accepted only when the default is None."""
        if key not in self.data or (self.data[key] is None and default is None):
            return default
        value = self.data[key]
        expected = _bound_text("number", gt, ge)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or (gt is not None and value <= gt)
            or (ge is not None and value < ge)
        ):
            self._bad(key, expected, value)
            return default
        if le is not None and value > le:
            self.err(key, f"must be at most {fmt_num(le)} (got {describe(value, key)})")
            return default
        return float(value)


def _bound_text(noun: str, gt: float | None, ge: float | None) -> str:
    """ "a positive integer", "a non-negative number", "an integer >= 5"..."""
    if (gt == 0) or (noun == "integer" and ge == 1):
        return f"a positive {noun}"
    if ge == 0:
        return f"a non-negative {noun}"
    article = "an" if noun == "integer" else "a"
    if ge is not None:
        return f"{article} {noun} >= {fmt_num(ge)}"
    if gt is not None:
        return f"{article} {noun} > {fmt_num(gt)}"
    return f"{article} {noun}"
