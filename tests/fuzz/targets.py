"""atheris fuzz targets over what reads bytes a crash left: the fMP4 tail parser, the segment-list reader, the
run-metadata reader, and the startup recovery of staging and catalog. Each must never raise, never delete footage,
at worst quarantine it. Run one: `python -m tests.fuzz.targets TARGET [libFuzzer flags] [corpus dirs]`;
tests/fuzz/test_fuzz.py runs each for a few seconds (default suite) or >= 60 s (`-m fuzz`)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["cctv_daemon"]):
    from cctv_daemon.catalog import recovery as catalog_recovery
    from cctv_daemon.catalog.deletion import SegmentDeleter
    from cctv_daemon.catalog.store import Catalog
    from cctv_daemon.core.clock import SystemClock
    from cctv_daemon.core.events import EventBus
    from cctv_daemon.segments import mp4_tail, staging
    from cctv_daemon.segments.finisher import SegmentFinisher
    from cctv_daemon.segments.watcher import _ListReader

import structlog

RUN = "r20261121T100000Z-abcdef"
WORK = Path(tempfile.mkdtemp(prefix="cctv-fuzz-"))
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def seed_fmp4() -> bytes:
    """A real 2-fragment segment as the daemon's ffmpeg writes it."""
    out = WORK / "seed.mp4"
    if not out.exists():
        subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=5", "-t", "2",
                        "-c:v", "libx264", "-g", "5", "-f", "mp4", "-movflags",
                        "+frag_keyframe+empty_moov+default_base_moof", str(out)], check=True)
    return out.read_bytes()


def fuzz_mp4_tail(data: bytes) -> None:
    f = WORK / "tail.mp4"
    f.write_bytes(data)
    removed, fragments = mp4_tail.truncate_incomplete_tail(f)
    kept = f.read_bytes()
    assert removed == len(data) - len(kept) and removed >= 0 and fragments >= 0
    assert data.startswith(kept), "only a tail is ever cut"


def fuzz_segment_list(data: bytes) -> None:
    reader = _ListReader(WORK / ".lists" / "cam" / f"{RUN}.csv", WORK / "cam")
    segs = reader.parse(data) + reader.parse(data)  # a rewritten list repeats entries: handed on once
    names = [s.path.name for s in segs]
    assert len(names) == len(set(names))
    for s in segs:
        assert staging.segment_index(s.path.name) is not None and s.path.parent == WORK / "cam"
        assert 0 <= s.start_s <= s.end_s


def fuzz_run_meta(data: bytes) -> None:
    meta = staging.parse_meta(data)
    if meta is not None:
        assert meta.camera and meta.feed_id and (meta.anchor is None or meta.anchor >= 0)


def fuzz_recovery(data: bytes) -> None:
    """A staging folder and a catalog as a crash may leave them, then what startup runs."""
    fdp = atheris.FuzzedDataProvider(data)
    seed = seed_fmp4()
    root = Path(tempfile.mkdtemp(dir=WORK))
    try:
        save = root / "rec"
        spool = staging.spool_dir(save)
        cam_dir = staging.staging_root(spool) / "cam"
        cam_dir.mkdir(parents=True)
        staging.lists_dir(cam_dir).mkdir(parents=True)
        staging.list_path(cam_dir, RUN).write_bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400)))
        staging.meta_path(cam_dir, RUN).write_bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120)))
        if fdp.ConsumeBool():
            staging.meta_tmp_path(cam_dir, RUN).write_bytes(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120)))
        footage: dict[str, bytes] = {}
        for i in range(fdp.ConsumeIntInRange(0, 2)):
            mode = fdp.ConsumeIntInRange(0, 2)
            if mode == 0:
                body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
            elif mode == 1:
                body = seed[: fdp.ConsumeIntInRange(0, len(seed))]
            else:
                b = bytearray(seed)
                for _ in range(fdp.ConsumeIntInRange(1, 8)):
                    b[fdp.ConsumeIntInRange(0, len(b) - 1)] = fdp.ConsumeInt(1) & 0xFF
                body = bytes(b)
            name = f"{RUN}_{i:06d}.mp4"
            (cam_dir / name).write_bytes(body)
            footage[name] = body
        catalog_bytes = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2000)) if fdp.ConsumeBool() else None
        if catalog_bytes is not None:
            spool.mkdir(parents=True, exist_ok=True)
            (spool / "catalog.sqlite3").write_bytes(catalog_bytes)

        catalog = Catalog.for_state_dir(spool, save)
        bus = EventBus()
        bus.subscribe("catalog", catalog.add_segment)
        SegmentFinisher(save, spool, FFMPEG, bus, SystemClock()).recover_all()
        catalog_recovery.startup_recover(catalog, SegmentDeleter(catalog), spool, ["cam"])
        catalog.close()

        # never deleted: every staged file is now final, quarantined, or still in staging (never lost)
        final = list(save.glob("cam/*/*.mp4"))
        damaged = list(staging.damaged_dir(spool).glob("cam/*.mp4"))
        left = list(cam_dir.glob("*.mp4"))
        assert len(final) + len(damaged) + len(left) == len(footage), (final, damaged, left, list(footage))
        for f in damaged + left:
            assert footage[f.name.split("~")[0]].startswith(f.read_bytes())
        if catalog_bytes:  # the old catalog is still there or moved aside, byte for byte
            kept = [p.read_bytes() for p in [spool / "catalog.sqlite3", *spool.glob("damaged/catalog-*.sqlite3")]]
            assert any(k == catalog_bytes for k in kept) or catalog_bytes[:16] == b"SQLite format 3\x00"
    finally:
        shutil.rmtree(root, ignore_errors=True)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "mp4_tail": fuzz_mp4_tail,
    "segment_list": fuzz_segment_list,
    "run_meta": fuzz_run_meta,
    "recovery": fuzz_recovery,
}


def main() -> None:
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # quiet: the fuzzer prints its own
    target = TARGETS[sys.argv[1]]
    try:
        atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
        atheris.Fuzz()
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
