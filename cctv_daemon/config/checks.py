"""What turns a config file into clear errors: decoding, the walk before validation (unknown keys with a
"did you mean", ``${ENV}`` substitution) and the translation of pydantic's errors into one line per problem,
each starting with its JSON path. Values of secret keys never appear in a message; URLs appear with their
password replaced by ``***``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import types
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NoReturn, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

REDACTED = "***"
TOP_LEVEL = "(top level)"
# Keys whose value is never shown in an error message (the fields typed SecretStr; a test keeps them equal).
SECRET_KEYS = frozenset({"password", "secretAccessKey", "sessionToken", "accessKeyId"})
# Keys whose value is shown with the URL's password redacted.
URL_KEYS = frozenset({"url", "endpointUrl"})
# Keys whose string value may reference environment variables: "${NAME}", whole or embedded.
ENV_KEYS = frozenset({"password", "userName", "url", "accessKeyId", "secretAccessKey", "sessionToken"})
MAX_DIGITS = 100  # longer integers are refused while decoding (Python refuses > 4300 with a traceback)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MIN_SCRUB_LEN = 4  # shorter secrets are not scrubbed from messages (they would garble them)


class ConfigError(Exception):
    """A config file with one or more errors. ``errors`` holds one line per error, each starting with its
    JSON path."""

    def __init__(self, errors: list[str], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        super().__init__(f"{source}: {len(errors)} error(s):\n" + "\n".join(f"  {e}" for e in errors))


def fail(message: str) -> NoReturn:
    """Reject a value from inside a validator with exactly ``message`` (the JSON path is added later)."""
    raise PydanticCustomError("config", "{message}", {"message": message})


# -- rendering values -------------------------------------------------------------------------------------
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


def kind(value: Any) -> str:
    """The JSON kind of ``value`` with an article: "an object", "a list", "a number"..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {int: "a number", float: "a number", str: "a string", dict: "an object", list: "a list"}
    return next((n for t, n in names.items() if isinstance(value, t)), type(value).__name__)


def describe(value: Any, key: str = "") -> str:
    """A short, safe rendering of a JSON value for "(got ...)": secrets show only their kind."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if key in SECRET_KEYS:
        return kind(value)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        shown = redact_url(value) if key in URL_KEYS else value
        return json.dumps(shown if len(shown) <= 80 else shown[:77] + "...", ensure_ascii=False)
    return kind(value)


def did_you_mean(word: str, options: Iterable[str]) -> str | None:
    """The option closest to ``word`` (case-insensitive first), or None."""
    lowered = {o.casefold(): o for o in options}
    close = difflib.get_close_matches(word.casefold(), list(lowered), n=1, cutoff=0.6)
    return lowered.get(word.casefold()) or (lowered[close[0]] if close else None)


def fmt_num(x: float) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def join(parent: str, key: str | int) -> str:
    """The JSON path of ``key`` (a key or a list index) inside ``parent`` ("" is the top level)."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


# -- decoding ---------------------------------------------------------------------------------------------
class _LongNumber(Exception):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _LongNumber(text)
    return int(text)


def _where(before: str) -> str:
    """ "line L column C" of the character that follows ``before``."""
    return f"line {before.count(chr(10)) + 1} column {len(before) - before.rfind(chr(10))}"


def decode(raw: bytes, source: str) -> Any:
    """The JSON value of a file's bytes; a ConfigError (never a traceback) for any text that is not JSON."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8", "replace")
        msg = f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at {_where(before)} (save the file as UTF-8)"
        raise ConfigError([msg], source) from None
    try:
        return json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        msg = "not valid JSON for a config: nested too deeply"
    except _LongNumber as exc:
        digits = str(exc)
        msg = (f"a number of {len(digits.lstrip('-'))} digits at {_where(text[: text.find(digits)])}"
               f" (at most {MAX_DIGITS} digits)")
    raise ConfigError([msg], source) from None


# -- the models' shape ------------------------------------------------------------------------------------
def model_fields(cls: type[Any]) -> dict[str, FieldInfo]:
    """The keys a config object accepts (the pydantic dataclass's fields, less the internal ones)."""
    all_fields: dict[str, FieldInfo] = getattr(cls, "__pydantic_fields__", {})
    return {name: fi for name, fi in all_fields.items() if not fi.exclude}


def inner_model(annotation: Any) -> type[Any] | None:
    """The config dataclass inside ``annotation`` (``X``, ``X | None``, ``tuple[X, ...]``), if any."""
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    return next((m for a in get_args(annotation) if (m := inner_model(a)) is not None), None)


def choices(annotation: Any) -> tuple[str, ...]:
    """The values of the Literal inside ``annotation``."""
    if get_origin(annotation) is Literal:
        return tuple(str(a) for a in get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(c for a in get_args(annotation) for c in choices(a))
    return ()


def _is_int(annotation: Any) -> bool:
    return annotation is int or int in get_args(annotation)


class Collector:
    """Collects error lines ("path: message") and the secret values met, for scrubbing."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.secrets: set[str] = set()

    def add(self, path: str, message: str) -> None:
        self.errors.append(f"{path or TOP_LEVEL}: {message}")

    def paths(self) -> set[str]:
        return {line.split(": ", 1)[0] for line in self.errors}

    def scrubbed(self) -> list[str]:
        """The errors, with any secret value met replaced by ``***`` (defence in depth)."""
        secrets = sorted((s for s in self.secrets if len(s) >= _MIN_SCRUB_LEN), key=len, reverse=True)
        out = []
        for line in self.errors:
            for s in secrets:
                line = line.replace(s, REDACTED)
            out.append(line)
        return out

    # -- before validation: unknown keys and ${ENV} ---------------------------------------------------------
    def prepare(self, data: dict[str, Any], cls: type[Any], path: str = "") -> dict[str, Any]:
        """``data`` without its unknown keys (each reported, with a "did you mean") and with ``${NAME}``
        replaced in the keys that allow it, recursively along the models."""
        known = model_fields(cls)
        out: dict[str, Any] = {}
        for key, value in data.items():
            at = join(path, key)
            if key not in known:
                hint = did_you_mean(key, known)
                self.add(at, f'unknown key (did you mean "{hint}"?)' if hint else "unknown key")
                continue
            if isinstance(value, str):
                value = self._expand(at, key, value) if key in ENV_KEYS else value
                self.secrets.add(value) if key in SECRET_KEYS else self.secrets.add(url_password(value) or "")
            sub = inner_model(known[key].annotation)
            if sub is not None and isinstance(value, dict):
                value = self.prepare(value, sub, at)
            elif sub is not None and isinstance(value, list):
                value = [self.prepare(v, sub, join(at, i)) if isinstance(v, dict) else v for i, v in enumerate(value)]
            out[key] = value
        return out

    def _expand(self, at: str, key: str, value: str) -> str:
        missing = list(dict.fromkeys(n for n in _ENV_REF.findall(value) if n not in os.environ))
        for name in missing:
            self.add(at, f'environment variable "{name}" is not set')
        if missing:
            return value  # left as written: no further noise about this key
        expanded = _ENV_REF.sub(lambda m: os.environ[m.group(1)], value)
        if value.strip() and not expanded.strip():
            self.add(at, "must be a non-empty string (empty after environment substitution)")
            return value
        return expanded

    # -- after validation: pydantic's errors as our lines ---------------------------------------------------
    def add_pydantic(self, errors: Sequence[ErrorDetails], root: type[Any], overrides: dict[str, str]) -> None:
        for err in errors:
            loc = err["loc"]
            path = ""
            for part in loc:
                path = join(path, part)
            self.add(path, message(err, field_at(root, loc), overrides))


def field_at(root: type[Any], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The FieldInfo of the last key of ``loc`` (a pydantic error location), walking from ``root``."""
    cls: type[Any] | None = root
    fi = None
    for part in loc:
        if isinstance(part, str):
            fi = model_fields(cls).get(part) if cls is not None else None
            if fi is None:
                return None
            cls = inner_model(fi.annotation)
    return fi


def message(err: ErrorDetails, fi: FieldInfo | None, overrides: dict[str, str]) -> str:
    """One pydantic error as our message: "required", "must be ... (got ...)", or a validator's own text."""
    kind_, value = err["type"], err.get("input")
    key = next((p for p in reversed(err["loc"]) if isinstance(p, str)), "")
    got = f"(got {describe(value, key)})"
    if kind_ == "missing":
        return "required"
    if kind_ == "config":
        return str((err.get("ctx") or {}).get("message", err["msg"]))
    if kind_ in ("dataclass_type", "dataclass_exact_type", "model_type", "dict_type"):
        return f"must be an object {got}"
    if kind_ in ("tuple_type", "list_type"):
        return f"must be {overrides.get(key, 'a list')} {got}"
    if kind_ == "literal_error" and fi is not None:
        options = choices(fi.annotation)
        hint = did_you_mean(value, options) if isinstance(value, str) else None
        listed = ", ".join(f'"{o}"' for o in options)
        return f"must be one of {listed} {got[:-1]}" + (f'; did you mean "{hint}"?)' if hint else ")")
    if kind_ == "bool_type":
        return f"must be a boolean (true or false) {got}"
    bounds = {b: getattr(m, b) for m in (fi.metadata if fi else []) for b in ("gt", "ge", "le") if hasattr(m, b)}
    if kind_ == "less_than_equal":
        return f"must be at most {fmt_num(bounds['le'])} {got}"
    if kind_.startswith(("int_", "float_", "finite_", "greater_than")):
        return f"must be {bound_text('integer' if fi and _is_int(fi.annotation) else 'number', bounds)} {got}"
    if kind_.startswith("string_"):
        return f"must be a non-empty string {got}"
    return f"is not valid {got}"


def bound_text(noun: str, bounds: dict[str, float]) -> str:
    """ "a positive integer", "a non-negative number", "an integer >= 5"..."""
    gt, ge = bounds.get("gt"), bounds.get("ge")
    if gt == 0 or (noun == "integer" and ge == 1):
        return f"a positive {noun}"
    if ge == 0:
        return f"a non-negative {noun}"
    article = "an" if noun == "integer" else "a"
    if ge is not None:
        return f"{article} {noun} >= {fmt_num(ge)}"
    return f"{article} {noun} > {fmt_num(gt)}" if gt is not None else f"{article} {noun}"
