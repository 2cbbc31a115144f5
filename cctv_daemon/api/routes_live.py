"""The live view: the HLS playlist and fMP4 fragments that the recording ffmpeg writes through its isolated tee
output into the camera's tmpfs folder (recording/live.py). Viewer role: token, cookie session, or a signed URL
(`signed_live_url`, whose `sig` the playlist passes on to its fragments). Only a configured camera's folder and
only file names matching live.LIVE_FILE are ever read: nothing of the request becomes a path."""

from __future__ import annotations

import time
from pathlib import Path as FsPath
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from cctv_daemon.api import auth
from cctv_daemon.api.context import ApiContext
from cctv_daemon.api.ids import valid_name
from cctv_daemon.api.models import NOT_FOUND
from cctv_daemon.api.security import Caller, ctx_of, optional_caller
from cctv_daemon.config.model import CameraConfig
from cctv_daemon.recording import live

router = APIRouter(tags=["live"])

CameraName = Path(max_length=64, description="the camera's cameraName")
STALE_S = 10.0  # a playlist not rewritten for this long is a camera that stopped: no live view
MEDIA_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".mp4": "video/mp4", ".m4s": "video/iso.segment"}


def camera_config(ctx: ApiContext, name: str) -> CameraConfig:
    if valid_name(name):
        for cam in ctx.config.cameras:
            if cam.cameraName == name:
                return cam
    raise HTTPException(404, "no such camera")


def live_resource(camera: str) -> str:
    return f"live:{camera}"


def live_urls(ctx: ApiContext, cam: CameraConfig) -> tuple[str | None, str | None]:
    """(live_url, signed_live_url) of a camera, both None when its live view is off."""
    if not live.enabled(ctx.config, cam):
        return None, None
    url = f"/api/cameras/{quote(cam.cameraName)}/live.m3u8"
    return url, f"{url}?sig={auth.video_signature(ctx.tokens, live_resource(cam.cameraName))}"


def _authorized(ctx: ApiContext, cam: CameraConfig, caller: Caller | None, sig: str | None) -> None:
    if caller is not None:
        return
    payload = auth.verify(ctx.tokens.key, "video", sig) if sig else None
    if payload is None or payload.get("r") != live_resource(cam.cameraName):
        raise HTTPException(401, "authentication required (token, sign-in or a valid signed URL)",
                            headers={"WWW-Authenticate": "Bearer"})


def _folder(ctx: ApiContext, cam: CameraConfig) -> FsPath:
    if not live.enabled(ctx.config, cam):
        raise HTTPException(404, "live view is off for this camera (liveView)")
    return live.camera_dir(ctx.config, cam)


def _read(path: FsPath) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        raise HTTPException(404, "no live view right now (the camera is not recording)") from None


def rewrite_playlist(text: str, sig: str | None) -> str:
    """Fragment URIs point at live/{file} (with the caller's `sig`, if that is how it was authorized)."""
    suffix = f"?sig={quote(sig, safe='')}" if sig else ""
    out = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-MAP:URI=\""):
            name = line[len("#EXT-X-MAP:URI=\""):].split("\"", 1)[0]
            line = f'#EXT-X-MAP:URI="live/{name}{suffix}"'
        elif line and not line.startswith("#"):
            line = f"live/{line}{suffix}"
        out.append(line)
    return "\n".join(out) + "\n"


@router.api_route("/api/cameras/{name}/live.m3u8", methods=["GET", "HEAD"], response_class=Response,
                  responses={**NOT_FOUND, 200: {"content": {"application/vnd.apple.mpegurl": {}}}})
def live_playlist(request: Request, name: str = CameraName, sig: str | None = Query(default=None, max_length=2048),
                  caller: Caller | None = Depends(optional_caller)) -> Response:
    """The camera's live HLS playlist (a few ~1 s fMP4 fragments, ≤ 5 s behind). 404 while the camera is not
    recording or its live view is off; the page then shows snapshots."""
    ctx = ctx_of(request)
    cam = camera_config(ctx, name)
    _authorized(ctx, cam, caller, sig)
    path = _folder(ctx, cam) / live.PLAYLIST
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        age = None
    if age is None or age > STALE_S:
        raise HTTPException(404, "no live view right now (the camera is not recording)")
    body = rewrite_playlist(_read(path).decode("utf-8", "replace"), None if caller else sig)
    return Response(body, media_type=MEDIA_TYPES[".m3u8"], headers={"Cache-Control": "no-store"})


@router.get("/api/cameras/{name}/live/{file}", response_class=Response,
            responses={**NOT_FOUND, 200: {"content": {"video/mp4": {}, "video/iso.segment": {}}}})
def live_file(request: Request, name: str = CameraName,
              file: str = Path(max_length=40, pattern=live.LIVE_FILE.pattern),
              sig: str | None = Query(default=None, max_length=2048),
              caller: Caller | None = Depends(optional_caller)) -> Response:
    """A fragment (or the init segment) named by the playlist."""
    ctx = ctx_of(request)
    cam = camera_config(ctx, name)
    _authorized(ctx, cam, caller, sig)
    path = _folder(ctx, cam) / file
    body = _read(path)
    return Response(body, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": "private, max-age=60"})
