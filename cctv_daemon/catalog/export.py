"""Export: one camera and a time range → one MP4, no re-encode, holding only the asked range.

Our segments are fragmented MP4 whose fragments each start on a keyframe, so a clip is made by joining
fragments almost as bytes (segments/fmp4.py): one moov (no edit lists), the fragments from the one holding
`--from` (the clip starts at the keyframe at or before it, at most one GOP early) to the one holding `--to`, whose
sample runs are cut right after the frame at or after `--to`. Moofs are rewritten (sequence numbers, base decode
times that run on across segments); mdat payloads are copied by the kernel (copy_file_range). Gaps collapse: the
clip's timeline jumps over them (they are reported). Segments whose codec setup differs (another camera run after a
reconfiguration) are joined per setup and the parts concatenated by ffmpeg (`-c copy`, which carries the new
parameter sets in band). The clip's start time is its `creation_time`; its SHA-256 is computed while it is written.
Timing and the measurements behind this choice: docs/benchmarks.md."""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cctv_daemon.catalog import export_remote
from cctv_daemon.catalog.export_io import Item, ProgressFn, sha256_file, write
from cctv_daemon.catalog.store import Catalog, Gap, SegmentRow, with_gaps
from cctv_daemon.segments import fmp4

TOUCH_S = 0.5  # a segment starting this close to the previous one's end continues it


class ExportError(Exception):
    pass


class HeldElsewhere(ExportError):
    """Footage of the range is held by other node(s) of the fleet and not uploaded yet."""

    def __init__(self, camera: str, nodes: list[str]) -> None:
        super().__init__(f"footage of camera {camera!r} in that range is held by node(s) {', '.join(nodes)} and "
                         "not uploaded yet: export it on that node (or once it is uploaded)")
        self.nodes = nodes


@dataclass
class Piece:
    """What one segment contributes: fragments first..last (inclusive); `keep` = samples kept per track in the
    last one (None: all)."""
    row: SegmentRow
    path: Path
    init: fmp4.Init
    frags: list[fmp4.Fragment]
    first: int
    last: int
    keep: dict[int, int] | None
    media_start: float  # seconds: the segment's first video decode time
    scale: float  # wall seconds per media second (a drifting camera clock)

    def wall(self, media_t: float) -> float:
        return self.row.start + (media_t - self.media_start) * self.scale


@dataclass
class ExportPlan:
    segments: list[SegmentRow]
    gaps: list[Gap]
    pieces: list[Piece]
    clip_start: float  # wall time of the first frame in the clip
    clip_end: float  # wall time of the end of the last frame
    media_seconds: float  # the clip's playing time
    requested: tuple[float, float] = (0.0, 0.0)
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # unreadable segments (their time is a gap)

    @property
    def duration(self) -> float:
        return self.media_seconds

    @property
    def groups(self) -> list[list[Piece]]:
        """Runs of pieces with one codec setup."""
        out: list[list[Piece]] = []
        for p in self.pieces:
            if out and out[-1][-1].init.signature == p.init.signature:
                out[-1].append(p)
            else:
                out.append([p])
        return out


@dataclass(frozen=True)
class ExportResult:
    output: Path
    sha256: str
    size: int
    clip_start: float
    clip_end: float
    seconds: float
    joined_by: str  # "fragments" or "ffmpeg"


def plan(catalog: Catalog, camera: str, start: float, end: float,
         remote: export_remote.RemoteFiles | None = None) -> ExportPlan:
    """Another node's segments (a shared catalog) are fetched from S3 into `remote` (the caller closes it)."""
    if end <= start:
        raise ExportError("the end of the range must be after its start")
    rows = export_remote.rows(catalog, camera, start, end)
    if not rows:
        raise ExportError(f"no footage of camera {camera!r} in that range")
    # The frame at or after --to may be the first one of the next segment, when that one touches.
    after = [r for r in export_remote.rows(catalog, camera, rows[-1].end, rows[-1].end + TOUCH_S)
             if r.start >= end and r.start - rows[-1].end < TOUCH_S]
    try:
        files = export_remote.locate(catalog, rows + after[:1], remote)
    except export_remote.HeldElsewhere as exc:  # a shared catalog: another node holds these files, not uploaded
        raise HeldElsewhere(camera, exc.nodes) from None
    except export_remote.FetchError as exc:
        raise ExportError(str(exc)) from None
    missing = [f for f in files if not f.exists()]
    if missing:
        raise ExportError(f"{len(missing)} catalogued file(s) are missing, e.g. {missing[0]} "
                          "(run `cctv-daemon check --repair`)")
    pieces: list[Piece] = []
    skipped: list[tuple[Path, str]] = []
    for i, (row, path) in enumerate(zip(rows, files, strict=False)):
        piece = _try_piece(row, path, start if i == 0 else None, end if i == len(rows) - 1 else None, skipped)
        if piece is not None:
            pieces.append(piece)
    if pieces and after and _last_frame_wall(pieces[-1]) < end - 1e-6:
        nxt = _try_piece(after[0], files[-1], None, after[0].start, [])  # its first frame only
        if nxt is not None:
            pieces.append(nxt)
    if not pieces:
        why = f" ({len(skipped)} unreadable segment(s), e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise ExportError(f"no footage of camera {camera!r} in that range{why}")
    used = [p.row for p in pieces if p.row in rows]
    first, last = pieces[0], pieces[-1]
    clip_start = first.wall(_piece_start(first))
    clip_end = last.wall(_piece_end(last))
    media = sum(_piece_end(p) - _piece_start(p) for p in pieces)
    return ExportPlan(rows, with_gaps(used, start, end), pieces, clip_start, clip_end, media, (start, end), files,
                      skipped)


def _video(init: fmp4.Init) -> int:
    vt = init.video_track
    if vt is None:
        raise fmp4.Fmp4Error("no video track")
    return vt


def _vtraf(frag: fmp4.Fragment, vt: int) -> fmp4.Traf | None:
    return next((t for t in frag.trafs if t.track_id == vt), None)


def _try_piece(row: SegmentRow, path: Path, start: float | None, end: float | None,
               skipped: list[tuple[Path, str]]) -> Piece | None:
    """A segment that cannot be read (no moov: killed in its first second; not our fragmented MP4) holds no
    footage we can join: it is skipped, and its time is reported as a gap."""
    try:
        piece = _piece(row, path, start, end)
    except (fmp4.Fmp4Error, OSError) as exc:
        skipped.append((path, str(exc)))
        return None
    if piece is None:
        skipped.append((path, "no complete fragment"))
    return piece


def _piece(row: SegmentRow, path: Path, start: float | None, end: float | None) -> Piece | None:
    init, moov_end = fmp4.read_init(path)
    vt = _video(init)
    ts = init.tracks[vt].timescale
    frags = fmp4.read_fragments(path, init, moov_end)  # audio-only ones too (a segment's audio tail)
    vts = {i: v for i, f in enumerate(frags) if (v := _vtraf(f, vt)) is not None}
    if not vts:
        return None
    vidx = sorted(vts)
    media_start = vts[vidx[0]].base_time / ts
    media_dur = sum(sum(v.durations) for v in vts.values()) / ts
    scale = row.duration / media_dur if media_dur > 0 and row.duration > 0 else 1.0
    first, last, keep = vidx[0], len(frags) - 1, None
    if start is not None and start > row.start:
        want = media_start + (start - row.start) / scale
        starts = [i for i in vidx if vts[i].sync0 and vts[i].base_time / ts <= want + 1e-6]
        first = starts[-1] if starts else next((i for i in vidx if vts[i].sync0), vidx[0])
    if end is not None and end < row.end:
        want = media_start + (end - row.start) / scale
        inside = [i for i in vidx if vts[i].base_time / ts <= want + 1e-6 and i >= first]
        last = inside[-1] if inside else first
        want_ts = math.floor((want - 1e-6) * ts)
        keep = _keep_until(frags[last], vt, init, want_ts)
        later = [i for i in vidx if i > last]
        if keep is None and later:  # the frame at or after --to opens the next fragment
            last = later[0]
            keep = _keep_until(frags[last], vt, init, want_ts)
    return Piece(row, path, init, frags, first, last, keep, media_start, scale)


def _keep_until(frag: fmp4.Fragment, vt: int, init: fmp4.Init, want: int) -> dict[int, int] | None:
    """Samples to keep per track in the last fragment: video up to and including the first frame presented at
    or after `want` (track timescale); other tracks up to the end of that frame."""
    v = _vtraf(frag, vt)
    assert v is not None
    pts: list[int] = []
    t = v.base_time
    for k in range(v.count):
        pts.append(t + v.ctos[k])
        t += v.durations[k]
    later = [p for p in pts if p >= want]
    if not later:
        return None
    # the shortest decode-order prefix (B-frames: a decode-order prefix always decodes) holding every frame
    # presented up to that one,
    # and every frame presented before the last one kept (no frame skipped in presentation order)
    n, top = 0, min(later)
    while True:
        need = max(k for k, p in enumerate(pts) if p <= top) + 1
        if need <= n:
            break
        n, top = need, max(pts[:need])
    if n == v.count:
        return None
    end_s = (v.base_time + sum(v.durations[:n])) / init.tracks[vt].timescale
    keep = {vt: n}
    for tr in frag.trafs:
        if tr.track_id == vt:
            continue
        ts = init.tracks[tr.track_id].timescale
        t, m = tr.base_time, 0
        while m < tr.count and t / ts < end_s:
            t += tr.durations[m]
            m += 1
        keep[tr.track_id] = m
    return keep


def _last_video(p: Piece) -> tuple[fmp4.Traf, int]:
    """The piece's last video track run and how many of its samples are kept."""
    vt = _video(p.init)
    i = max(i for i in range(p.first, p.last + 1) if _vtraf(p.frags[i], vt) is not None)
    v = _vtraf(p.frags[i], vt)
    assert v is not None
    return v, v.count if p.keep is None or i != p.last else p.keep.get(vt, v.count)


def _last_frame_wall(p: Piece) -> float:
    """Wall time at which the piece's last kept video frame is presented."""
    vt = _video(p.init)
    v, n = _last_video(p)
    last = max(v.base_time + sum(v.durations[:k]) + v.ctos[k] for k in range(n))
    return p.wall(last / p.init.tracks[vt].timescale)


def _piece_start(p: Piece) -> float:
    vt = _video(p.init)
    v = _vtraf(p.frags[p.first], vt)
    assert v is not None
    return v.base_time / p.init.tracks[vt].timescale


def _piece_end(p: Piece) -> float:
    vt = _video(p.init)
    v, n = _last_video(p)
    return (v.base_time + sum(v.durations[:n])) / p.init.tracks[vt].timescale


def _items(pieces: list[Piece], creation: float, seconds: float) -> list[Item]:
    """The joined file as a list of byte strings and source ranges."""
    init = pieces[0].init
    items: list[Item] = [fmp4.build_init(init, creation, seconds)]
    next_t: dict[int, int] = {}  # per track: the decode time where its next sample goes
    out_s = 0.0
    seq = 0
    prev: Piece | None = None
    for p in pieces:
        origin = _piece_start(p)
        # Every track of a segment is placed from the segment's start (the video's first frame). ffmpeg writes
        # each track's first sample at 0 and stretches its duration to reach the second one, so when segments
        # of a run touch, a track's first sample is moved back to where that track stopped in the previous
        # segment (its duration shrunk to match): no overlap, no drift at joins.
        touching = prev is not None and p.row.start - prev.row.end < TOUCH_S
        shift: dict[int, int] = {}
        for i in range(p.first, p.last + 1):
            frag = p.frags[i]
            keep = p.keep if i == p.last else None
            trafs = []
            for t in frag.trafs:
                ts = p.init.tracks[t.track_id].timescale
                base = None
                if t.track_id not in shift:
                    placed = round((out_s + t.base_time / ts - origin) * ts)
                    after = next_t.get(t.track_id, 0)
                    first = t.durations[0] if t.count else 0
                    moved = (fmp4.with_first_duration(t, placed + first - after)
                             if touching and t.track_id in next_t and 0 < after - placed < first else None)
                    shift[t.track_id] = (placed if moved else max(after, placed)) - t.base_time
                    if moved is not None:  # its second sample and all later ones stay where they were placed
                        t, base = moved, after
                if base is None:
                    base = t.base_time + shift[t.track_id]
                n = t.count if keep is None else keep.get(t.track_id, t.count)
                trafs.append((t, base, n))
                next_t[t.track_id] = base + sum(t.durations[:n])
            seq += 1
            moof, ranges = fmp4.build_moof(seq, trafs)
            payload = sum(n for _o, n in ranges)
            items.append(moof + (8 + payload).to_bytes(4, "big") + b"mdat")
            for off, n in ranges:
                if n:
                    items.append((p.path, frag.offset + off, n))
        vt = _video(p.init)
        out_s = next_t[vt] / p.init.tracks[vt].timescale
        prev = p
    return items


def export(ffmpeg_exe: str, p: ExportPlan, output: Path, progress: ProgressFn | None = None,
           overwrite: bool = False) -> ExportResult:
    """Write the clip (to a temporary name, fsynced, renamed when complete: a failed export leaves no half file)."""
    if output.exists() and not overwrite:
        raise ExportError(f"{output} exists (use --force to overwrite)")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = output.with_name(f".{output.name}.part{os.getpid()}.mp4")
    groups = p.groups
    try:
        if len(groups) == 1:
            digest = write(_items(groups[0], p.clip_start, p.media_seconds), tmp_out, p.media_seconds, progress)
            how = "fragments"
        else:
            digest = _join_groups(ffmpeg_exe, p, groups, tmp_out, progress)
            how = "ffmpeg"
        os.replace(tmp_out, output)
    except OSError as exc:
        raise ExportError(f"cannot write {output}: {exc}") from None
    finally:
        tmp_out.unlink(missing_ok=True)
    if progress is not None:
        progress(p.media_seconds, p.media_seconds)
    return ExportResult(output, digest, output.stat().st_size, p.clip_start, p.clip_end, p.media_seconds, how)


def stream(ffmpeg_exe: str, p: ExportPlan, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The same clip as `export` writes, as bytes while it is made (the HTTP API streams it). One codec setup: the
    joined fragments straight from the segment files; several: joined into a temporary file first (ffmpeg's
    concat needs a seekable output), then streamed and removed."""
    groups = p.groups
    if len(groups) == 1:
        for item in _items(groups[0], p.clip_start, p.media_seconds):
            if isinstance(item, bytes):
                yield item
                continue
            src, off, n = item
            with src.open("rb") as f:
                f.seek(off)
                while n > 0:
                    data = f.read(min(chunk, n))
                    if not data:
                        raise ExportError(f"{src} ended early")
                    n -= len(data)
                    yield data
        return
    with tempfile.TemporaryDirectory(prefix="cctv-export-") as tmp:
        out = Path(tmp) / "clip.mp4"
        _join_groups(ffmpeg_exe, p, groups, out, None)
        with out.open("rb") as f:
            while data := f.read(chunk):
                yield data


def _join_groups(ffmpeg_exe: str, p: ExportPlan, groups: list[list[Piece]], out: Path,
                 progress: ProgressFn | None) -> str:
    """Codec setups differ inside the range: join each run of one setup as fragments, then let ffmpeg
    concatenate the parts (stream copy; it puts the new parameter sets in band)."""
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        parts: list[Path] = []
        for i, g in enumerate(groups):
            part = Path(tmp) / f"part{i:03d}.mp4"
            secs = sum(_piece_end(x) - _piece_start(x) for x in g)
            write(_items(g, p.clip_start, secs), part, secs, None)
            parts.append(part)
        lst = Path(tmp) / "parts.ffconcat"
        lst.write_text("ffconcat version 1.0\n" + "".join(
            "file '" + str(x).replace("'", "'\\''") + "'\n" for x in parts), encoding="utf-8")
        created = datetime.fromtimestamp(p.clip_start, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        args = [ffmpeg_exe, "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0",
                "-i", str(lst), "-map", "0", "-c", "copy", "-metadata", f"creation_time={created}",
                "-progress", "pipe:1", "-nostats", "-f", "mp4", str(out)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        for raw in proc.stdout:
            key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
            if key == "out_time_us" and progress is not None and value.lstrip("-").isdigit():
                progress(min(max(0, int(value)) / 1e6, p.media_seconds * 0.999), p.media_seconds)
        err = proc.stderr.read().decode("utf-8", "replace")
        if proc.wait() != 0 or not out.exists():
            raise ExportError(f"ffmpeg failed: {err.strip()[-500:]}")
        with out.open("rb+") as f:
            os.fsync(f.fileno())
    return sha256_file(out)
