"""The API's request and response shapes (they make the OpenAPI document at /openapi.json, /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Health(BaseModel):
    ok: bool = Field(description="live and ready: the main loop ticks and the daemon is running")
    phase: str
    loop_age_s: float = Field(description="seconds since the main loop last published its state")
    cameras_configured: int
    cameras_recording: int


class CameraView(BaseModel):
    name: str
    state: str = Field(description="recording, starting, backoff, stopped, auth_failed, not_found, disk_full...")
    reason: str
    mode: str
    enabled: bool
    since: float | None
    last_segment_at: float | None
    segments: int
    restarts: int
    reconnects: int
    stalls: int
    last_error: str | None
    record_until: float | None = Field(description="end of an on-demand recording (epoch seconds)")
    record_left_s: float | None
    record_label: str | None
    snapshot_url: str
    live_url: str | None = Field(default=None, description="the live HLS playlist (null: live view off)")
    signed_live_url: str | None = Field(default=None, description="the same with a signature valid 12 h (no token)")
    codec: str | None = Field(default=None, description='RFC 6381 codec of its newest segment ("avc1.64001f", '
                              '"hvc1.1.6.L93.B0"); null before the first one')
    lease: dict[str, Any] | None = Field(default=None, description="with a fleet: the camera's lease (state held|"
                                         "releasing|standby|unowned|waiting, holder node, expires_at, reason); "
                                         "null for a single node")


class CameraList(BaseModel):
    cameras: list[CameraView]


class CameraAction(BaseModel):
    camera: str
    state: str


class RecordRequest(BaseModel):
    minutes: int = Field(ge=1, le=1440, description="how long to record, 1..1440 minutes")
    label: str | None = Field(default=None, max_length=200, description="who asked / incident number")


class RecordResult(CameraAction):
    until: float
    recording_id: int
    label: str | None


class Recording(BaseModel):
    id: int
    camera: str
    label: str | None
    start: float
    end: float
    keep: bool


class RecordingList(BaseModel):
    recordings: list[Recording]


class KeepRequest(BaseModel):
    keep: bool


class Segment(BaseModel):
    id: str = Field(description="stable opaque id")
    camera: str
    start: float
    end: float
    duration: float
    size: int
    state: str
    upload_state: str | None
    labels: list[str]
    video_url: str
    node: str = Field(default="", description="the fleet node that holds the file (fleet.nodeId)")
    overlaps_with: str | None = Field(default=None, description="another node recorded this camera at this time "
                                      "too (a brief double recording after a partition: both copies are kept)")


class SegmentDetail(Segment):
    signed_video_url: str = Field(description="plays without a token for 12 h (for <video> and sharing)")
    codec: str | None = Field(default=None, description='RFC 6381 codec ("avc1.64001f", "hvc1.1.6.L93.B0"): ask '
                              "the browser canPlayType before playing; null when unknown")


class Gap(BaseModel):
    camera: str
    start: float
    end: float
    seconds: float


class SegmentList(BaseModel):
    segments: list[Segment]
    gaps: list[Gap]
    start: float
    end: float
    next: str | None = Field(description="more segments: ask again with cursor=<next>; null on the last page")


class Deleted(BaseModel):
    deleted: bool


class ExportDigest(BaseModel):
    export_id: str
    complete: bool
    bytes: int
    sha256: str | None = Field(description="SHA-256 of the whole clip, once its stream has ended")


class Session(BaseModel):
    role: str
    csrf: str = Field(description="send as X-CSRF-Token with state-changing requests made with the cookie")


class Error(BaseModel):
    detail: Any


ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Error, "description": "no or invalid credentials"}}
FORBIDDEN: dict[int | str, dict[str, Any]] = {403: {"model": Error, "description": "needs the admin token"}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Error, "description": "no such camera / segment"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Error, "description": "refused by the daemon"}}
