"""Segments: search (with gaps and labels), one segment, its video (HTTP Range; S3 redirect once removed locally
after upload), deletion (admin, through the catalog's one deletion path on the main loop, audited), and export."""

from __future__ import annotations

import datetime
import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from cctv_daemon.api import auth, codec, ids, media, segment_list
from cctv_daemon.api.context import ApiContext, CommandFailed
from cctv_daemon.api.models import FORBIDDEN, NOT_FOUND, Deleted, ExportDigest, SegmentDetail, SegmentList
from cctv_daemon.api.security import Caller, admin, ctx_of, optional_caller, viewer
from cctv_daemon.catalog import export as catalog_export
from cctv_daemon.catalog import export_remote, labels, overlaps
from cctv_daemon.catalog.store import SegmentRow

router = APIRouter(tags=["segments"])

SegmentId = Path(max_length=200, description="a segment's opaque id")
DEFAULT_RANGE_S = 86400.0
MAX_RANGE_S = 31 * 86400.0
TIME_HELP = "epoch seconds or ISO 8601 (UTC unless it has an offset)"


def invalid(loc: str, msg: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors (what the OpenAPI document promises for 422)."""
    return HTTPException(422, [{"type": "value_error", "loc": ["query", loc], "msg": msg}])


def parse_time(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        t = float(value)
    except ValueError:
        try:
            d = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise invalid(name, f"must be {TIME_HELP} (got {value[:40]!r})") from None
        t = (d if d.tzinfo else d.replace(tzinfo=datetime.timezone.utc)).timestamp()
    if not 0 <= t < 1e11:
        raise invalid(name, "out of range")
    return t


def _range(start_s: str | None, end_s: str | None) -> tuple[float, float]:
    start, end = parse_time(start_s, "from"), parse_time(end_s, "to")
    end = end if end is not None else (start + DEFAULT_RANGE_S if start is not None else time.time())
    start = start if start is not None else end - DEFAULT_RANGE_S
    if end <= start or end - start > MAX_RANGE_S:
        raise invalid("to", f"the range must have from < to and span at most {MAX_RANGE_S / 86400:g} days")
    return start, end


def _camera(ctx: ApiContext, camera: str | None) -> str | None:
    if camera is None or camera == "":
        return None
    if camera not in ctx.camera_names():
        raise HTTPException(404, "no such camera")
    return camera


def _segment(row: SegmentRow, seg_labels: list[str], other: str | None) -> dict[str, Any]:
    sid = ids.segment_id(row)
    return {"id": sid, "camera": row.camera, "start": row.start, "end": row.end,
            "duration": round(row.end - row.start, 3), "size": row.size, "state": row.state,
            "upload_state": row.upload_state, "labels": seg_labels, "video_url": f"/api/segments/{sid}/video",
            "node": row.node_id, "overlaps_with": other}


@router.get("/api/segments", response_model=SegmentList, responses=NOT_FOUND)
def list_segments(request: Request, camera: str | None = Query(default=None, max_length=64),
                  start_s: str | None = Query(default=None, alias="from", max_length=40, description=TIME_HELP),
                  end_s: str | None = Query(default=None, alias="to", max_length=40, description=TIME_HELP),
                  label: str | None = Query(default=None, max_length=200),
                  limit: int = Query(default=segment_list.DEFAULT_LIMIT, ge=1, le=segment_list.MAX_LIMIT,
                                     description="at most this many segments per page"),
                  cursor: str | None = Query(default=None, max_length=400,
                                             description="the `next` of the previous page"),
                  _caller: Caller = Depends(viewer)) -> Response:
    """Segments overlapping [from, to) (default: the last 24 h), ordered by camera then start, with the gaps
    between them; `label` keeps only the segments of recordings with that label. At most `limit` segments a page:
    while `next` is not null, ask again with `cursor=<next>` (same other parameters) for the rest."""
    ctx = ctx_of(request)
    cam = _camera(ctx, camera)
    start, end = _range(start_s, end_s)
    try:
        after = segment_list.Cursor.decode(cursor) if cursor else None
    except segment_list.BadCursor as exc:
        raise invalid("cursor", str(exc)) from None
    page = segment_list.listing(ctx.catalog, cam, start, end, label, limit, after)
    return Response(page.body, media_type="application/json")


def _find(ctx: ApiContext, seg_id: str) -> SegmentRow:
    row = ids.find(ctx.catalog, seg_id)
    if row is None:
        raise HTTPException(404, "no such segment")
    return row


@router.get("/api/segments/{seg_id}", response_model=SegmentDetail, responses=NOT_FOUND)
def get_segment(request: Request, seg_id: str = SegmentId, _caller: Caller = Depends(viewer)) -> Any:
    ctx = ctx_of(request)
    row = _find(ctx, seg_id)
    doubles = overlaps.find(ctx.catalog, row.camera, row.start, row.end)
    seg = _segment(row, labels.labels_of(row, labels.find(ctx.catalog, camera=row.camera, start=row.start,
                                                          end=row.end)),
                   overlaps.other_node(row.camera, row.node_id, row.start, row.end, doubles))
    sig = auth.video_signature(ctx.tokens, f"segment:{seg['id']}")
    path = ctx.catalog.abs(row.path)
    return {**seg, "signed_video_url": f"{seg['video_url']}?sig={sig}",
            "codec": codec.video_codec(path) if row.state in ("complete", "deleting") else None}


@router.get("/api/segments/{seg_id}/video", response_class=FileResponse,
            responses={**NOT_FOUND, 206: {"description": "a byte range (Range header)"},
                       307: {"description": "removed locally after upload: a presigned S3 URL"},
                       200: {"content": {"video/mp4": {}}}})
def segment_video(request: Request, seg_id: str = SegmentId, sig: str | None = Query(default=None, max_length=2048),
                  caller: Caller | None = Depends(optional_caller)) -> Response:
    """The MP4 file; Range requests get 206 (seeking). `sig` (from signed_video_url) replaces the token."""
    ctx = ctx_of(request)
    if caller is None:
        payload = auth.verify(ctx.tokens.key, "video", sig) if sig else None
        if payload is None or payload.get("r") != f"segment:{seg_id}":
            raise HTTPException(401, "authentication required (token, sign-in or a valid signed URL)",
                                headers={"WWW-Authenticate": "Bearer"})
    row = _find(ctx, seg_id)
    path = ctx.catalog.abs(row.path)
    here = not export_remote.elsewhere(ctx.catalog, row)  # a shared catalog lists every node's rows
    if here and row.state in ("complete", "deleting") and path.is_file():
        return FileResponse(path, media_type="video/mp4", filename=path.name, content_disposition_type="inline")
    if row.upload_state == "uploaded":
        key = ctx.catalog.uploaded_key(row.path, row.node_id)
        url = ctx.presign(key) if key else None
        if url:
            return RedirectResponse(url, status_code=307)
    if not here and row.state in ("complete", "deleting"):
        raise HTTPException(409, f"this segment is held by node {row.node_id} and not uploaded yet: "
                                 "play it from that node")
    raise HTTPException(404, "this segment is no longer available")


@router.delete("/api/segments/{seg_id}", response_model=Deleted, responses={**FORBIDDEN, **NOT_FOUND})
def delete_segment(request: Request, seg_id: str = SegmentId, caller: Caller = Depends(admin)) -> Any:
    """Delete one segment (file and catalog row) through the catalog's deletion path; audited."""
    ctx = ctx_of(request)
    row = _find(ctx, seg_id)
    try:
        result = ctx.call("delete_segment", {"path": row.path, "reason": f"deleted by {caller.who} via the API"})
    except CommandFailed as exc:
        ctx.audit.record(caller.who, "delete", seg_id, "refused", error=str(exc))
        raise HTTPException(404, "no such segment") from None
    ctx.audit.record(caller.who, "delete", seg_id, "ok", camera=row.camera, start=row.start, end=row.end)
    return result


@router.get("/api/export", response_class=StreamingResponse,
            responses={**NOT_FOUND, 409: {"description": "another node holds footage of the range, not uploaded yet"},
                       200: {"content": {"video/mp4": {}},
                                          "description": "the clip, streamed; X-Export-Id names its digest"}})
def export(request: Request, camera: str = Query(max_length=64),
           start_s: str = Query(alias="from", max_length=40, description=TIME_HELP),
           end_s: str = Query(alias="to", max_length=40, description=TIME_HELP),
           _caller: Caller = Depends(viewer)) -> Response:
    """One MP4 of [from, to), streamed while it is made (no re-encode; it may start up to one keyframe interval
    early). Another node's footage (a shared catalog) is read from S3 when uploaded; when it is not, 409 names
    the node. Its SHA-256: GET /api/export/{X-Export-Id}/sha256 once the stream has ended."""
    ctx = ctx_of(request)
    cam = _camera(ctx, camera)
    assert cam is not None
    start, end = _range(start_s, end_s)
    try:
        p, remote = media.plan_export(ctx, cam, start, end)
    except catalog_export.HeldElsewhere as exc:
        raise HTTPException(409, str(exc)) from None
    except catalog_export.ExportError as exc:
        raise HTTPException(404, str(exc)) from None
    try:
        export_id = secrets.token_urlsafe(12)
        digest = request.app.state.exports.new(export_id)
        name = f"{cam}_{datetime.datetime.fromtimestamp(start, datetime.timezone.utc):%Y%m%dT%H%M%SZ}.mp4"
        return StreamingResponse(media.export_stream(ctx, p, digest, remote), media_type="video/mp4",
                                 headers={"X-Export-Id": export_id,
                                          "Content-Disposition": f'attachment; filename="{name}"',
                                          "Link": f'</api/export/{export_id}/sha256>; rel="digest"'})
    except BaseException:
        remote.close()
        raise


@router.get("/api/export/{export_id}/sha256", response_model=ExportDigest, responses=NOT_FOUND)
def export_digest(request: Request, export_id: str = Path(max_length=40, pattern=r"^[A-Za-z0-9_-]+$"),
                  _caller: Caller = Depends(viewer)) -> ExportDigest:
    state = request.app.state.exports.get(export_id)
    if state is None:
        raise HTTPException(404, "no such export (only the last 100 are kept)")
    return ExportDigest(export_id=export_id, complete=state.complete, bytes=state.bytes, sha256=state.sha256)
