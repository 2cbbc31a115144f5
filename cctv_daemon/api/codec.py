"""The video codec of a segment as an RFC 6381 `codecs` string ("avc1.64001f", "hvc1.1.6.L93.B0"), read from
the sample description in its MP4 init (a few KiB at the start of the file; segments/fmp4.py). The page asks its
browser `canPlayType('video/mp4; codecs="…"')` before playing, and says "this browser cannot play H.265" (with
the download) instead of failing. Finished segments never change, so answers are cached by path."""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path

from cctv_daemon.catalog.store import Catalog
from cctv_daemon.segments import fmp4

_VISUAL_ENTRY = 78  # VisualSampleEntry fields before its child boxes (after the 8-byte box header)


def latest_codec(catalog: Catalog, camera: str) -> str | None:
    """The codec of the camera's newest finished segment (None: none yet, or unreadable)."""
    paths = catalog.paths_where(camera, catalog.db.t.segments.c.state == "complete", newest_first=True, limit=1)
    return video_codec(catalog.abs(paths[0])) if paths else None


def video_codec(path: Path) -> str | None:
    return _cached(str(path))


@lru_cache(maxsize=4096)
def _cached(path: str) -> str | None:
    try:
        init, _ = fmp4.read_init(Path(path))
    except (OSError, fmp4.Fmp4Error, struct.error):
        return None
    track = init.video_track
    if track is None:
        return None
    for trak in init.moov.find_all(b"trak"):
        tkhd = trak.find(b"tkhd")
        if tkhd is None or struct.unpack_from(">I", tkhd.payload, 20 if tkhd.payload[0] == 1 else 12)[0] != track:
            continue
        stsd = _path(trak, b"mdia", b"minf", b"stbl", b"stsd")
        return None if stsd is None else _from_stsd(stsd.payload)
    return None


def _path(box: fmp4.Box, *kinds: bytes) -> fmp4.Box | None:
    for kind in kinds:
        found = box.find(kind)
        if found is None:
            return None
        box = found
    return box


def _from_stsd(payload: bytes) -> str | None:
    """The first sample entry of an stsd payload (version/flags, entry count, entries)."""
    if len(payload) < 16:
        return None
    size, kind = struct.unpack_from(">I4s", payload, 8)
    entry = payload[16:8 + size]
    fourcc = kind.decode("latin-1")
    children = {b.type: b.payload for b in _boxes(entry[_VISUAL_ENTRY:])}
    if kind in (b"avc1", b"avc3") and len(children.get(b"avcC", b"")) >= 4:
        c = children[b"avcC"]
        return f"{fourcc}.{c[1]:02x}{c[2]:02x}{c[3]:02x}"
    if kind in (b"hvc1", b"hev1") and len(children.get(b"hvcC", b"")) >= 13:
        return f"{fourcc}.{hevc_params(children[b'hvcC'])}"
    return fourcc if fourcc.isalnum() else None


def hevc_params(c: bytes) -> str:
    """ISO/IEC 14496-15 annex E: profile space + profile, compatibility flags (bit-reversed, hex), tier + level,
    constraint bytes without trailing zeros: e.g. "1.6.L93.B0"."""
    space, tier, profile = c[1] >> 6, (c[1] >> 5) & 1, c[1] & 0x1F
    compat = int(f"{int.from_bytes(c[2:6], 'big'):032b}"[::-1], 2)
    constraints = list(c[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    parts = [("", "A", "B", "C")[space] + str(profile), f"{compat:X}", ("L", "H")[tier] + str(c[12])]
    return ".".join(parts + [f"{b:02X}" for b in constraints])


def _boxes(data: bytes) -> list[fmp4.Box]:
    try:
        return fmp4.parse_boxes(data)
    except (fmp4.Fmp4Error, struct.error):
        return []
