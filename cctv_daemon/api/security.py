"""Who is calling: a Bearer token (viewer or admin), or a cookie session from a one-time sign-in link (then a
state-changing request also needs the X-CSRF-Token header), or, for video only, a signed URL. Every endpoint but
/api/health depends on one of these."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request

from cctv_daemon.api import auth
from cctv_daemon.api.context import ApiContext

SESSION_COOKIE = "cctv_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Caller:
    role: auth.Role
    via: str  # bearer | session | signed-url

    @property
    def who(self) -> str:
        return f"{self.role} ({self.via})"


def ctx_of(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def _unauthorized(detail: str = "authentication required (Bearer token or sign-in)") -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def optional_caller(request: Request) -> Caller | None:
    ctx = ctx_of(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        role = ctx.tokens.role_of_bearer(token.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            raise _unauthorized("invalid token")
        return Caller(role, "bearer")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        payload = auth.verify(ctx.tokens.key, "session", cookie)
        if payload is None or payload.get("role") not in auth.ROLES:
            raise _unauthorized("session expired: sign in again")
        if request.method not in SAFE_METHODS and \
                request.headers.get(CSRF_HEADER) != auth.csrf_token(ctx.tokens, cookie):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
        return Caller(payload["role"], "session")  # type: ignore[arg-type]
    return None


async def viewer(caller: Caller | None = Depends(optional_caller)) -> Caller:
    if caller is None:
        raise _unauthorized()
    return caller


async def admin(caller: Caller = Depends(viewer)) -> Caller:
    if caller.role != "admin":
        raise HTTPException(403, "this needs the admin token")
    return caller
