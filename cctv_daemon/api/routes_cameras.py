"""Cameras: list, one, start/stop/record (admin; through the main loop's commands; audited), the latest keyframe,
and labelled recordings (keep)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from cctv_daemon.api import media
from cctv_daemon.api.codec import latest_codec
from cctv_daemon.api.context import ApiContext, CommandFailed
from cctv_daemon.api.ids import valid_name
from cctv_daemon.api.models import (
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    CameraAction,
    CameraList,
    CameraView,
    KeepRequest,
    Recording,
    RecordingList,
    RecordRequest,
    RecordResult,
)
from cctv_daemon.api.routes_live import live_urls
from cctv_daemon.api.security import Caller, admin, ctx_of, viewer
from cctv_daemon.catalog import labels
from cctv_daemon.config.model import CameraConfig
from cctv_daemon.service.snapshot import thaw

router = APIRouter(tags=["cameras"])

CameraName = Path(max_length=64, description="the camera's cameraName")


def _camera_config(ctx: ApiContext, name: str) -> CameraConfig:
    if valid_name(name):
        for cam in ctx.config.cameras:
            if cam.cameraName == name:
                return cam
    raise HTTPException(404, "no such camera")


def camera_view(ctx: ApiContext, cam_cfg: CameraConfig, now: float) -> CameraView:
    snap = ctx.snapshot().cameras.get(cam_cfg.cameraName)
    until = snap.record_until if snap is not None else None
    return CameraView(
        name=cam_cfg.cameraName, mode=cam_cfg.mode, enabled=cam_cfg.enabled,
        state=snap.state if snap else "stopped",
        reason=snap.reason if snap else ("disabled" if not cam_cfg.enabled else "not started"),
        since=snap.since if snap else None, last_segment_at=snap.last_segment_at if snap else None,
        segments=snap.segments if snap else 0, restarts=max(0, snap.starts - 1) if snap else 0,
        reconnects=snap.reconnects if snap else 0, stalls=snap.stalls if snap else 0,
        last_error=snap.last_error if snap else None, record_until=until,
        record_left_s=None if until is None else round(max(0.0, until - now), 1),
        record_label=snap.record_label if snap else None,
        snapshot_url=f"/api/cameras/{cam_cfg.cameraName}/snapshot.jpg",
        codec=latest_codec(ctx.catalog, cam_cfg.cameraName),
        lease=thaw(snap.lease) if snap is not None and snap.lease is not None else None,
        **dict(zip(("live_url", "signed_live_url"), live_urls(ctx, cam_cfg), strict=True)))


@router.get("/api/cameras", response_model=CameraList)
def list_cameras(request: Request, _caller: Caller = Depends(viewer)) -> CameraList:
    ctx, now = ctx_of(request), time.time()
    return CameraList(cameras=[camera_view(ctx, cam, now) for cam in ctx.config.cameras])


@router.get("/api/cameras/{name}", response_model=CameraView, responses=NOT_FOUND)
def get_camera(request: Request, name: str = CameraName, _caller: Caller = Depends(viewer)) -> CameraView:
    ctx = ctx_of(request)
    return camera_view(ctx, _camera_config(ctx, name), time.time())


def _act(ctx: ApiContext, caller: Caller, action: str, command: str, args: dict[str, Any]) -> Any:
    target = str(args["camera"])
    try:
        result = ctx.call(command, args)
    except CommandFailed as exc:
        ctx.audit.record(caller.who, action, target, "refused", error=str(exc))
        raise HTTPException(409, str(exc)) from None
    ctx.audit.record(caller.who, action, target, "ok", **{k: v for k, v in args.items() if k in ("minutes", "label")})
    return result


@router.post("/api/cameras/{name}/start", response_model=CameraAction, responses={**FORBIDDEN, **NOT_FOUND, **CONFLICT})
def start_camera(request: Request, name: str = CameraName, caller: Caller = Depends(admin)) -> Any:
    """Record continuously from now on (also after a daemon restart)."""
    ctx = ctx_of(request)
    cam = _camera_config(ctx, name)
    return _act(ctx, caller, "start", "start_camera", {"camera": cam.cameraName})


@router.post("/api/cameras/{name}/stop", response_model=CameraAction, responses={**FORBIDDEN, **NOT_FOUND, **CONFLICT})
def stop_camera(request: Request, name: str = CameraName, caller: Caller = Depends(admin)) -> Any:
    """Stop recording; the camera stays stopped across daemon restarts until started again or its config changes."""
    ctx = ctx_of(request)
    cam = _camera_config(ctx, name)
    return _act(ctx, caller, "stop", "stop_camera", {"camera": cam.cameraName})


@router.post("/api/cameras/{name}/record", response_model=RecordResult,
             responses={**FORBIDDEN, **NOT_FOUND, **CONFLICT})
def record(request: Request, body: RecordRequest, name: str = CameraName, caller: Caller = Depends(admin)) -> Any:
    """Record for `minutes` (a second request extends to the later end); `label` is kept with every segment."""
    ctx = ctx_of(request)
    cam = _camera_config(ctx, name)
    return _act(ctx, caller, "record", "record",
                {"camera": cam.cameraName, "minutes": body.minutes, "label": body.label, "who": caller.who})


@router.get("/api/cameras/{name}/snapshot.jpg", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"image/jpeg": {}}}})
async def snapshot_jpg(request: Request, name: str = CameraName, _caller: Caller = Depends(viewer)) -> Response:
    """The latest keyframe, decoded from the newest finished segment (no second connection to the camera)."""
    ctx = ctx_of(request)
    cam = _camera_config(ctx, name)
    jpeg = await run_in_threadpool(media.latest_keyframe, ctx, cam.cameraName)
    if jpeg is None:
        raise HTTPException(404, "no footage of this camera yet")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/api/recordings", response_model=RecordingList)
def list_recordings(request: Request, camera: str | None = Query(default=None, max_length=64),
                    label: str | None = Query(default=None, max_length=200),
                    _caller: Caller = Depends(viewer)) -> RecordingList:
    """On-demand recordings (`record` requests) and their labels."""
    rows = labels.find(ctx_of(request).catalog, camera=camera, label=label)
    return RecordingList(recordings=[Recording(**r.to_dict()) for r in rows])  # type: ignore[arg-type]


@router.put("/api/recordings/{rid}/keep", response_model=Recording, responses={**FORBIDDEN, **NOT_FOUND})
def keep_recording(request: Request, body: KeepRequest, rid: int = Path(ge=1, le=2**62),
                   caller: Caller = Depends(admin)) -> Any:
    """Mark (or unmark) a recording keep: retention never deletes its segments while marked."""
    ctx = ctx_of(request)
    try:
        result = ctx.call("keep_recording", {"id": rid, "keep": body.keep})
    except CommandFailed as exc:
        raise HTTPException(404, str(exc)) from None
    ctx.audit.record(caller.who, "keep" if body.keep else "unkeep", f"recording {rid}", "ok")
    return result


