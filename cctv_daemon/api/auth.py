"""API credentials, all kept in {stateDir}/api-tokens.json (0600, created at first start, read by the CLI):
a viewer token and an admin token (Bearer), and a signing key for everything signed: one-time sign-in links,
cookie sessions, CSRF tokens and short-lived video URLs. Nothing here ever logs or returns a token it did not
just mint for the caller."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cctv_daemon.core import constants as c

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")
SESSION_TTL_S = 7 * 86400
SIGNIN_TTL_S = 600
VIDEO_URL_TTL_S = 12 * 3600


def tokens_path(state_dir: Path) -> Path:
    return state_dir / c.API_TOKENS_FILENAME


@dataclass(frozen=True)
class Tokens:
    viewer: str
    admin: str
    key: bytes  # signing key

    def role_of_bearer(self, token: str) -> Role | None:
        for role in ("admin", "viewer"):
            if hmac.compare_digest(token.encode(), getattr(self, role).encode()):
                return role  # type: ignore[return-value]
        return None


def load_or_create(state_dir: Path) -> Tokens:
    """Read the tokens file, creating it (0600, atomically, never overwriting) on first start."""
    path = tokens_path(state_dir)
    if not path.exists():
        data = {"viewer": secrets.token_urlsafe(32), "admin": secrets.token_urlsafe(32),
                "signing_key": secrets.token_urlsafe(32)}
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another process created it first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return read(state_dir)


def read(state_dir: Path) -> Tokens:
    path = tokens_path(state_dir)
    if os.name == "posix" and path.stat().st_mode & 0o077:
        path.chmod(0o600)
    data = json.loads(path.read_text(encoding="utf-8"))
    return Tokens(viewer=str(data["viewer"]), admin=str(data["admin"]), key=str(data["signing_key"]).encode())


# -- signed values: "<payload b64>.<hmac b64>" ---------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, purpose: str, payload: dict[str, object]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(key, f"{purpose}:{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(key: bytes, purpose: str, value: str, now: float | None = None) -> dict[str, object] | None:
    """The payload of a value signed for `purpose` and not expired (its "exp"), else None."""
    body, dot, mac = value.partition(".")
    if not dot or len(value) > 2048:
        return None
    try:
        want = hmac.new(key, f"{purpose}:{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _unb64(mac)):
            return None
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeError):
        return None
    if not isinstance(payload, dict):
        return None
    exp = payload.get("exp")
    if not isinstance(exp, (int, float)) or exp < (time.time() if now is None else now):
        return None
    return payload


def signin_code(tokens: Tokens, role: Role = "admin", ttl: float = SIGNIN_TTL_S) -> str:
    """What `cctv-daemon ui-url` puts in its link: usable once (the server remembers used nonces) and briefly."""
    return sign(tokens.key, "signin", {"role": role, "nonce": secrets.token_urlsafe(12), "exp": time.time() + ttl})


def session_value(tokens: Tokens, role: Role) -> str:
    return sign(tokens.key, "session", {"role": role, "sid": secrets.token_urlsafe(12),
                                        "exp": time.time() + SESSION_TTL_S})


def csrf_token(tokens: Tokens, session: str) -> str:
    return _b64(hmac.new(tokens.key, f"csrf:{session}".encode(), hashlib.sha256).digest())


def video_signature(tokens: Tokens, resource: str, ttl: float = VIDEO_URL_TTL_S) -> str:
    return sign(tokens.key, "video", {"r": resource, "exp": int(time.time() + ttl)})


class UsedNonces:
    """One-time sign-in links: a nonce is accepted once (kept until its link would have expired anyway)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, nonce: str, exp: float) -> bool:
        now = time.time()
        with self._lock:
            self._seen = {n: e for n, e in self._seen.items() if e >= now}
            if nonce in self._seen:
                return False
            self._seen[nonce] = exp
            return True
