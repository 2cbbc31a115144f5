"""A small reader/writer for our fragmented MP4 segments (`frag_keyframe+empty_moov+default_base_moof`):
the init part (ftyp + moov) and the list of fragments (moof + mdat), with each track run's samples. Enough to
join fragments of several segments almost as bytes (docs/cli.md, `export`): moofs are re-serialized (sequence
number, 64-bit base decode time, trimmed sample runs), mdat payloads are copied untouched.

Only what ffmpeg's mov muxer writes for these files is supported (one `trun` per `traf`, data offsets relative
to the moof); anything else raises Fmp4Error and the caller falls back to ffmpeg."""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"edts", b"dinf", b"moof", b"traf"}
NON_SYNC = 0x00010000  # sample_is_non_sync_sample in sample flags
MP4_EPOCH_OFFSET = 2082844800  # seconds from 1904-01-01 to 1970-01-01


class Fmp4Error(Exception):
    pass


@dataclass
class Box:
    type: bytes
    payload: bytes = b""  # leaf payload (after the 8-byte header)
    children: list[Box] = field(default_factory=list)

    @property
    def container(self) -> bool:
        return self.type in CONTAINERS

    def find(self, kind: bytes) -> Box | None:
        return next((c for c in self.children if c.type == kind), None)

    def find_all(self, kind: bytes) -> list[Box]:
        return [c for c in self.children if c.type == kind]

    def serialize(self) -> bytes:
        body = b"".join(c.serialize() for c in self.children) if self.container else self.payload
        return struct.pack(">I4s", 8 + len(body), self.type) + body


def parse_boxes(data: bytes, off: int = 0, end: int | None = None) -> list[Box]:
    end = len(data) if end is None else end
    out: list[Box] = []
    while off + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, off)
        hdr = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, off + 8)[0]
            hdr = 16
        elif size == 0:
            size = end - off
        if size < hdr or off + size > end:
            raise Fmp4Error(f"truncated {kind!r} box")
        box = Box(kind)
        if kind in CONTAINERS:
            box.children = parse_boxes(data, off + hdr, off + size)
        else:
            box.payload = data[off + hdr:off + size]
        out.append(box)
        off += size
    return out


@dataclass(frozen=True)
class TrackInfo:
    track_id: int
    handler: bytes  # b"vide", b"soun", ...
    timescale: int
    signature: bytes  # what must be equal to join fragments: sample description, timescale, trex defaults
    trex: tuple[int, int, int, int]  # default sample description index, duration, size, flags


@dataclass
class Init:
    ftyp: bytes
    moov: Box
    tracks: dict[int, TrackInfo]
    movie_timescale: int

    @property
    def signature(self) -> tuple[bytes, ...]:
        return tuple(t.signature for _id, t in sorted(self.tracks.items()))

    @property
    def video_track(self) -> int | None:
        return next((i for i, t in sorted(self.tracks.items()) if t.handler == b"vide"), None)


@dataclass
class Traf:
    track_id: int
    base_time: int  # tfdt, in the track's timescale
    tfhd_flags: int
    sdi: int | None
    default_duration: int | None
    default_size: int | None
    default_flags: int | None
    trun_flags: int
    trun_version: int  # 1: signed composition offsets
    data_offset: int  # relative to the moof's first byte
    first_sample_flags: int | None
    entries: bytes  # the trun's per-sample table, as stored
    durations: list[int]
    sizes: list[int]
    ctos: list[int]
    sync0: bool  # the first sample is a sync sample

    @property
    def entry_size(self) -> int:
        return 4 * bin(self.trun_flags & 0xF00).count("1")

    @property
    def count(self) -> int:
        return len(self.durations)


def with_first_duration(t: Traf, duration: int) -> Traf | None:
    """The run with its first sample's duration changed (None when durations are not stored per sample)."""
    if not t.trun_flags & 0x100 or not t.count:
        return None
    entries = struct.pack(">I", duration) + t.entries[4:]
    return replace(t, entries=entries, durations=[duration, *t.durations[1:]])


@dataclass
class Fragment:
    offset: int  # of the moof in its file
    moof_size: int
    mdat_offset: int  # of the mdat box (header included)
    mdat_size: int
    trafs: list[Traf]


def read_init(path: Path) -> tuple[Init, int]:
    """ftyp + moov of a segment, and the file offset right after the moov."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
        boxes_end = 0
        ftyp = b""
        while True:
            if boxes_end + 8 > len(head):
                more = f.read(1 << 20)
                if not more:
                    raise Fmp4Error(f"{path}: no moov")
                head += more
                continue
            size, kind = struct.unpack_from(">I4s", head, boxes_end)
            if size < 8:
                raise Fmp4Error(f"{path}: bad box {kind!r}")
            while boxes_end + size > len(head):
                more = f.read(boxes_end + size - len(head))
                if not more:
                    raise Fmp4Error(f"{path}: truncated {kind!r}")
                head += more
            if kind == b"ftyp":
                ftyp = head[boxes_end:boxes_end + size]
            if kind == b"moov":
                moov = parse_boxes(head, boxes_end, boxes_end + size)[0]
                return _init(ftyp, moov, path), boxes_end + size
            if kind in (b"moof", b"mdat"):
                raise Fmp4Error(f"{path}: fragments before the moov")
            boxes_end += size


def _init(ftyp: bytes, moov: Box, path: Path) -> Init:
    mvhd = moov.find(b"mvhd")
    if mvhd is None:
        raise Fmp4Error(f"{path}: no mvhd")
    movie_ts = struct.unpack_from(">I", mvhd.payload, 20 if mvhd.payload[0] == 1 else 12)[0]
    trex: dict[int, tuple[int, int, int, int]] = {}
    mvex = moov.find(b"mvex")
    for t in mvex.find_all(b"trex") if mvex else []:
        tid, sdi, dur, size, flags = struct.unpack_from(">IIIII", t.payload, 4)
        trex[tid] = (sdi, dur, size, flags)
    tracks: dict[int, TrackInfo] = {}
    for trak in moov.find_all(b"trak"):
        tkhd, mdia = trak.find(b"tkhd"), trak.find(b"mdia")
        if tkhd is None or mdia is None:
            raise Fmp4Error(f"{path}: incomplete trak")
        tid = struct.unpack_from(">I", tkhd.payload, 20 if tkhd.payload[0] == 1 else 12)[0]
        mdhd, hdlr = mdia.find(b"mdhd"), mdia.find(b"hdlr")
        minf = mdia.find(b"minf")
        stbl = minf.find(b"stbl") if minf else None
        stsd = stbl.find(b"stsd") if stbl else None
        if mdhd is None or hdlr is None or stsd is None:
            raise Fmp4Error(f"{path}: incomplete trak {tid}")
        timescale = struct.unpack_from(">I", mdhd.payload, 20 if mdhd.payload[0] == 1 else 12)[0]
        defaults = trex.get(tid, (1, 0, 0, 0))
        sig = struct.pack(">I4sI", tid, hdlr.payload[8:12], timescale) + stsd.payload + struct.pack(">4I", *defaults)
        tracks[tid] = TrackInfo(tid, hdlr.payload[8:12], timescale, sig, defaults)
    return Init(ftyp, moov, tracks, movie_ts)


def read_fragments(path: Path, init: Init, start: int) -> list[Fragment]:
    """Every complete moof+mdat pair after the moov (a crash-cut last fragment is left out)."""
    frags: list[Fragment] = []
    with path.open("rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        if size_total <= start:
            return frags
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:  # no syscall per box header
            off = start
            pending: tuple[int, bytes] | None = None  # (offset, moof bytes)
            while off + 8 <= size_total:
                size, kind = struct.unpack_from(">I4s", data, off)
                hlen = 8
                if size == 1:
                    if off + 16 > size_total:
                        break
                    size, hlen = struct.unpack_from(">Q", data, off + 8)[0], 16
                elif size == 0:
                    size = size_total - off
                if size < hlen or off + size > size_total:
                    break  # cut by a crash
                if kind == b"moof":
                    pending = (off, data[off:off + size])
                elif kind == b"mdat" and pending is not None:
                    moof_off, moof = pending
                    frags.append(Fragment(moof_off, len(moof), off, size, _trafs(moof, init, path)))
                    pending = None
                off += size
    return frags


def _trafs(moof_bytes: bytes, init: Init, path: Path) -> list[Traf]:
    moof = parse_boxes(moof_bytes)[0]
    out: list[Traf] = []
    for traf in moof.find_all(b"traf"):
        tfhd, tfdt = traf.find(b"tfhd"), traf.find(b"tfdt")
        truns = traf.find_all(b"trun")
        if tfhd is None or tfdt is None or len(truns) != 1:
            raise Fmp4Error(f"{path}: unsupported traf layout")
        p = tfhd.payload
        flags = int.from_bytes(p[1:4], "big")
        tid = struct.unpack_from(">I", p, 4)[0]
        if flags & 0x1 or not flags & 0x20000:
            raise Fmp4Error(f"{path}: data offsets not relative to the moof")
        pos = 8
        vals: dict[int, int] = {}
        for bit in (0x2, 0x8, 0x10, 0x20):
            if flags & bit:
                vals[bit] = struct.unpack_from(">I", p, pos)[0]
                pos += 4
        track = init.tracks.get(tid)
        if track is None:
            raise Fmp4Error(f"{path}: fragment of unknown track {tid}")
        _sdi, d_dur, d_size, d_flags = track.trex
        d_dur, d_size, d_flags = vals.get(0x8, d_dur), vals.get(0x10, d_size), vals.get(0x20, d_flags)
        base = (struct.unpack_from(">Q", tfdt.payload, 4)[0] if tfdt.payload[0] == 1
                else struct.unpack_from(">I", tfdt.payload, 4)[0])
        t = truns[0].payload
        tflags = int.from_bytes(t[1:4], "big")
        count = struct.unpack_from(">I", t, 4)[0]
        pos = 8
        data_offset = 0
        if tflags & 0x1:
            data_offset = struct.unpack_from(">i", t, pos)[0]
            pos += 4
        first_flags = None
        if tflags & 0x4:
            first_flags = struct.unpack_from(">I", t, pos)[0]
            pos += 4
        per = [bit for bit in (0x100, 0x200, 0x400, 0x800) if tflags & bit]
        entries = t[pos:pos + 4 * len(per) * count]
        if len(entries) != 4 * len(per) * count:
            raise Fmp4Error(f"{path}: truncated trun")
        table = struct.unpack(f">{len(per) * count}I", entries) if per else ()
        cols = {bit: table[i::len(per)] for i, bit in enumerate(per)}
        durations = list(cols.get(0x100, [d_dur] * count))
        sizes = list(cols.get(0x200, [d_size] * count))
        ctos = [c - (1 << 32) if c >= 1 << 31 and t[0] == 1 else c for c in cols.get(0x800, [0] * count)]
        flag0 = first_flags if first_flags is not None else (cols[0x400][0] if 0x400 in cols and count
                                                             else d_flags)
        out.append(Traf(tid, base, flags, vals.get(0x2), vals.get(0x8), vals.get(0x10), vals.get(0x20), tflags,
                        t[0], data_offset, first_flags, entries, durations, sizes, ctos,
                        count > 0 and not flag0 & NON_SYNC))
    return out


def build_moof(seq: int, trafs: list[tuple[Traf, int, int]]) -> tuple[bytes, list[tuple[int, int]]]:
    """A moof for (traf, new base decode time, samples kept from the start). Returns the moof bytes and, per
    traf, the (old data offset, byte count) of the kept samples, in the order the new mdat must hold them
    (the new data offsets assume that order, right after an 8-byte mdat header)."""
    parts: list[tuple[Traf, int, int]] = [(t, b, n) for t, b, n in trafs if n > 0]

    def traf_box(t: Traf, base: int, n: int, data_offset: int) -> Box:
        tfhd = struct.pack(">I", t.tfhd_flags) + struct.pack(">I", t.track_id)
        for bit, v in ((0x2, t.sdi), (0x8, t.default_duration), (0x10, t.default_size),
                       (0x20, t.default_flags)):
            if t.tfhd_flags & bit:
                tfhd += struct.pack(">I", v or 0)
        tfdt = struct.pack(">IQ", 1 << 24, base)
        trun = struct.pack(">II", t.trun_version << 24 | t.trun_flags | 0x1, n) + struct.pack(">i", data_offset)
        if t.trun_flags & 0x4:
            trun += struct.pack(">I", t.first_sample_flags or 0)
        trun += t.entries[:n * t.entry_size]
        return Box(b"traf", children=[Box(b"tfhd", tfhd), Box(b"tfdt", tfdt), Box(b"trun", trun)])

    def traf_size(t: Traf, n: int) -> int:
        tfhd = 16 + 4 * bin(t.tfhd_flags & 0x3A).count("1")
        trun = 20 + (4 if t.trun_flags & 0x4 else 0) + n * t.entry_size
        return 8 + tfhd + 20 + trun

    size = 8 + 16 + sum(traf_size(t, n) for t, _b, n in parts)
    offsets, ranges, pos = [], [], size + 8
    for t, _b, n in parts:
        nbytes = sum(t.sizes[:n])
        offsets.append(pos)
        ranges.append((t.data_offset, nbytes))
        pos += nbytes
    kids = [Box(b"mfhd", struct.pack(">II", 0, seq))]
    kids += [traf_box(t, b, n, o) for (t, b, n), o in zip(parts, offsets, strict=True)]
    out = Box(b"moof", children=kids).serialize()
    if len(out) != size:
        raise Fmp4Error("moof size mismatch")
    return out, ranges


def build_init(init: Init, creation_epoch: float, duration_s: float) -> bytes:
    """ftyp + moov for the joined file: no edit lists (nothing hidden), the clip's start as creation time,
    the total duration in mvex/mehd."""
    moov = parse_boxes(init.moov.serialize())[0]  # a deep copy
    when = max(0, int(creation_epoch) + MP4_EPOCH_OFFSET)

    def stamp(box: Box | None) -> None:
        if box is None:
            return
        p = bytearray(box.payload)
        if p[0] == 1:
            struct.pack_into(">QQ", p, 4, when, when)
        else:
            struct.pack_into(">II", p, 4, when & 0xFFFFFFFF, when & 0xFFFFFFFF)
        box.payload = bytes(p)

    stamp(moov.find(b"mvhd"))
    for trak in moov.find_all(b"trak"):
        trak.children = [c for c in trak.children if c.type != b"edts"]
        stamp(trak.find(b"tkhd"))
        mdia = trak.find(b"mdia")
        stamp(mdia.find(b"mdhd") if mdia else None)
    mvex = moov.find(b"mvex")
    if mvex is not None:
        mvex.children = [c for c in mvex.children if c.type != b"mehd"]
        mehd = Box(b"mehd", struct.pack(">IQ", 1 << 24, round(duration_s * init.movie_timescale)))
        mvex.children.insert(0, mehd)
    return init.ftyp + moov.serialize()


def copy_range(src_fd: int, dst_fd: int, offset: int, count: int) -> None:
    """Copy bytes between files in the kernel when it can (Linux copy_file_range, else sendfile), else through
    a buffer (Windows)."""
    while count > 0:
        n = 0
        try:
            if hasattr(os, "copy_file_range"):
                n = os.copy_file_range(src_fd, dst_fd, min(count, 1 << 30), offset)
            elif hasattr(os, "sendfile") and os.name != "nt":
                n = os.sendfile(dst_fd, src_fd, offset, min(count, 1 << 30))
        except OSError:
            n = 0
        if n <= 0:
            n = _copy_buffered(src_fd, dst_fd, offset, min(count, 8 << 20))
        if n <= 0:
            raise Fmp4Error("source file ended early")
        offset += n
        count -= n


def read_at(fd: int, offset: int, count: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, count, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows: the callers own this descriptor alone
    return os.read(fd, count)


def _copy_buffered(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    data = read_at(src_fd, offset, count)
    view = memoryview(data)
    while view:
        view = view[os.write(dst_fd, view):]
    return len(data)
