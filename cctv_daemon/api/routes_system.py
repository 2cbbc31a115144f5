"""Health (no auth), status, the event stream, metrics and signing in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from cctv_daemon.api import auth, metrics
from cctv_daemon.api.models import ERRORS, Health, Session
from cctv_daemon.api.security import SESSION_COOKIE, Caller, ctx_of, viewer

router = APIRouter()

LOOP_STALE_S = 5.0
SSE_KEEPALIVE_S = 15.0


@router.get("/api/health", response_model=Health, tags=["system"],
            responses={503: {"model": Health, "description": "not ready (starting, stopping, or the loop is stuck)"}})
async def health(request: Request) -> JSONResponse:
    """Liveness and readiness, without authentication: the main loop ticks and the daemon is running."""
    ctx = ctx_of(request)
    snap = ctx.snapshot()
    age = max(0.0, time.time() - snap.updated_at)
    recording = sum(1 for cam in snap.cameras.values() if cam.state == "recording")
    ok = snap.phase == "running" and age < LOOP_STALE_S
    body = Health(ok=ok, phase=snap.phase, loop_age_s=round(age, 3), cameras_configured=len(ctx.config.cameras),
                  cameras_recording=recording)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


_STATUS_200: dict[int | str, dict[str, Any]] = {200: {
    "description": "the status document",
    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True, "title": "Status"}}},
}}


@router.get("/api/status", tags=["system"], response_class=Response, responses={**ERRORS, **_STATUS_200})
async def status(request: Request, _caller: Caller = Depends(viewer)) -> Response:
    """The same JSON as `cctv-daemon status --json` (schema in docs/cli.md)."""
    data = ctx_of(request).snapshot().to_dict()
    data.update(running=True, age_s=round(max(0.0, time.time() - float(data["updated_at"])), 1))  # as the CLI's
    # Written by json's C encoder, as status.json is (service/status.py: default=str), so
    # FastAPI's jsonable_encoder walk (0.4-0.5 ms of the ~2 ms a request costs) adds nothing.
    return Response(json.dumps(data, separators=(",", ":"), default=str), media_type="application/json")


@router.get("/api/events", tags=["system"], responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
            response_class=StreamingResponse)
async def events(request: Request, _caller: Caller = Depends(viewer)) -> StreamingResponse:
    """Server-sent events: `camera_state`, `segment_finished`, `segment_uploaded`, `segment_deleted`
    (data: JSON). A comment line every 15 s keeps idle connections open."""
    broker = ctx_of(request).broker
    sid, queue = broker.open()

    async def stream() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
        finally:
            broker.close(sid)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/metrics", tags=["system"], responses={**ERRORS, 200: {"content": {"text/plain": {}}}},
            response_class=Response)
def get_metrics(request: Request, _caller: Caller = Depends(viewer)) -> Response:
    """Prometheus text format (docs/api.md lists the metrics)."""
    body, content_type = metrics.render(ctx_of(request))
    return Response(body, media_type=content_type)


@router.get("/api/signin", tags=["auth"], status_code=303, response_class=RedirectResponse,
            responses={303: {"description": "signed in: a session cookie, then the page"},
                       401: {"description": "the link is invalid, expired or was already used"}})
def signin(request: Request, code: str = Query(max_length=2048)) -> Response:
    """The one-time sign-in link `cctv-daemon ui-url` prints: sets an HttpOnly, SameSite=Strict session cookie."""
    ctx = ctx_of(request)
    payload = auth.verify(ctx.tokens.key, "signin", code)
    role, nonce, exp = (payload or {}).get("role"), (payload or {}).get("nonce"), (payload or {}).get("exp")
    if role not in auth.ROLES or not isinstance(nonce, str) or not isinstance(exp, (int, float)) \
            or not ctx.nonces.first_use(nonce, exp):
        raise HTTPException(401, "this sign-in link is invalid, expired or was already used: run `cctv-daemon"
                                 " ui-url` again")
    resp = RedirectResponse("/", status_code=303)
    secure = ctx.config.api.tlsCert is not None or ctx.config.api.behindTlsProxy
    resp.set_cookie(SESSION_COOKIE, auth.session_value(ctx.tokens, role), max_age=int(auth.SESSION_TTL_S),  # type: ignore[arg-type]
                    httponly=True, samesite="strict", secure=secure, path="/")
    ctx.audit.record(f"{role} (sign-in link)", "signin", "-", "ok")
    return resp


@router.get("/api/session", response_model=Session, tags=["auth"], responses=ERRORS)
async def session(request: Request, caller: Caller = Depends(viewer)) -> Session:
    """The caller's role, and the CSRF token to send (X-CSRF-Token) with state-changing requests."""
    cookie = request.cookies.get(SESSION_COOKIE)
    ctx = ctx_of(request)
    return Session(role=caller.role, csrf=auth.csrf_token(ctx.tokens, cookie) if cookie else "")


@router.post("/api/signout", status_code=204, tags=["auth"], responses=ERRORS)
def signout(_caller: Caller = Depends(viewer)) -> Response:
    resp = Response(status_code=204)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
