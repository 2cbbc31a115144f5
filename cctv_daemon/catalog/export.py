"""Export: one camera and a time range → one MP4, no re-encode. The catalogued segments overlapping the range
are joined with ffmpeg's concat demuxer and stream-copied (`-c copy`); `-ss`/`-to` are input options, so the
start snaps to the keyframe at or before the requested time (the clip may start up to one GOP early)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from cctv_daemon.catalog.store import Catalog, Gap, SegmentRow, with_gaps

log = structlog.get_logger("cctv_daemon.export")

ProgressFn = Callable[[float, float], None]  # (seconds done, seconds total)


class ExportError(Exception):
    pass


@dataclass
class ExportPlan:
    segments: list[SegmentRow]
    gaps: list[Gap]
    ss: float  # seconds into the concatenated timeline
    to: float
    files: list[Path] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.to - self.ss


def plan(catalog: Catalog, camera: str, start: float, end: float) -> ExportPlan:
    if end <= start:
        raise ExportError("the end of the range must be after its start")
    rows = catalog.segments(camera=camera, start=start, end=end)
    if not rows:
        raise ExportError(f"no footage of camera {camera!r} in that range")
    gaps = with_gaps(rows, start, end)
    # Gaps collapse in the concatenated timeline: place `to` by walking the segments' durations.
    pos = 0.0
    to = 0.0
    for r in rows:
        if r.start < end:
            to = pos + min(r.duration, max(0.0, end - r.start))
        pos += r.duration
    ss = max(0.0, start - rows[0].start)
    return ExportPlan(rows, gaps, ss, to, [catalog.abs(r.path) for r in rows])


def _concat_list(files: list[Path], fast_open: bool = True) -> str:
    """The concat demuxer's list. `fast_open`: per-file `option` directives (ffmpeg >= 5) so that opening each
    segment does not probe (decode) frames — this halves the cost of long exports (docs/benchmarks.md)."""
    lines = ["ffconcat version 1.0"]
    for f in files:
        quoted = str(f.resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
        if fast_open:
            lines += ["option analyzeduration 0", "option probesize 4096"]
    return "\n".join(lines) + "\n"


def export(ffmpeg_exe: str, p: ExportPlan, output: Path, progress: ProgressFn | None = None,
           overwrite: bool = False) -> None:
    """Write the clip (to a temporary name, renamed when complete: a failed export leaves no half file)."""
    missing = [f for f in p.files if not f.exists()]
    if missing:
        raise ExportError(f"{len(missing)} catalogued file(s) are missing, e.g. {missing[0]} "
                          "(run `cctv-daemon check --repair`)")
    if output.exists() and not overwrite:
        raise ExportError(f"{output} exists (use --force to overwrite)")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run(ffmpeg_exe, p, output, progress, fast_open=True)
    except ExportError as exc:
        if "option" not in str(exc).lower() and "keyword" not in str(exc).lower():
            raise
        _run(ffmpeg_exe, p, output, progress, fast_open=False)  # an ffmpeg without `option` directives
    log.info("exported", camera=p.segments[0].camera, output=str(output), segments=len(p.segments),
             gaps=len(p.gaps), seconds=round(p.duration, 3))


def _run(ffmpeg_exe: str, p: ExportPlan, output: Path, progress: ProgressFn | None, fast_open: bool) -> None:
    tmp_out = output.with_name(f".{output.name}.part{os.getpid()}.mp4")
    with tempfile.NamedTemporaryFile("w", suffix=".ffconcat", delete=False, encoding="utf-8") as lst:
        lst.write(_concat_list(p.files, fast_open))
    # -ss/-to are input options: with -c copy the clip starts at the keyframe at or before -ss.
    args = [ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0",
            "-ss", f"{p.ss:.3f}", "-to", f"{p.to:.3f}", "-i", lst.name, "-map", "0", "-c", "copy",
            "-progress", "pipe:1", "-nostats", "-f", "mp4", str(tmp_out)]
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        for raw in proc.stdout:
            key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
            if key == "out_time_us" and progress is not None and value.lstrip("-").isdigit():
                progress(max(0, int(value)) / 1e6, p.duration)
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if proc.wait() != 0 or not tmp_out.exists():
            raise ExportError(f"ffmpeg failed: {err.strip()[-500:]}")
        os.replace(tmp_out, output)
    finally:
        os.unlink(lst.name)
        tmp_out.unlink(missing_ok=True)
