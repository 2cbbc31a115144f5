"""`export` with real fragmented-MP4 segments made by ffmpeg's segment muxer as the recorder makes them (10 fps,
one keyframe a second, AAC audio), a real SQLite catalog and the real CLI: the clip holds only the asked range
(packet counts with edit lists ignored), plays without errors, carries its start time and SHA-256; gaps are
listed; runs with another codec setup still export; stdout carries only the result."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cctv_daemon.catalog import export
from cctv_daemon.catalog.store import Catalog, SegmentRow
from cctv_daemon.core import constants as c
from cctv_daemon.segments import names as segment_names

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
FPS = 10


def make_run(out_dir: Path, seconds: int, seg_s: int, size: str = "320x180",
             audio: bool = True, bframes: int = 0) -> list[tuple[Path, float, float]]:
    """One ffmpeg run cut into fragmented-MP4 segments; returns (file, media start, media end) per segment."""
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={FPS}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    reorder = ["-tune", "zerolatency"] if not bframes else ["-bf", str(bframes)]
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-t", str(seconds), "-c:v", "libx264",
           "-preset", "ultrafast", *reorder, "-pix_fmt", "yuv420p", "-g", str(FPS),
           "-force_key_frames", f"expr:gte(t,n_forced*{seg_s})", "-threads", "1",
           *(["-c:a", "aac"] if audio else []), "-f", "segment", "-segment_time", str(seg_s),
           "-reset_timestamps", "1", "-segment_format", "mp4", "-segment_format_options",
           "movflags=+frag_keyframe+empty_moov+default_base_moof:flush_packets=1",
           "-segment_list", str(out_dir / "list.csv"), "-segment_list_type", "csv", str(out_dir / "s%04d.mp4")]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    out = []
    for line in (out_dir / "list.csv").read_text().splitlines():
        name, start, end = line.split(",")
        out.append((out_dir / name, float(start), float(end)))
    return out


def catalog_run(save: Path, camera: str, run: list[tuple[Path, float, float]], t0: float,
                rate: float = 1.0) -> list[SegmentRow]:
    """Move the run's files to their final names under `save` and catalog them, wall time = t0 + media time
    * rate (rate ≠ 1: a camera whose clock drifts)."""
    rows = []
    for f, s, e in run:
        start, end = t0 + s * rate, t0 + e * rate
        dest = segment_names.final_path(save, camera, "main", start, end)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dest)
        rows.append(SegmentRow(dest.relative_to(save).as_posix(), camera, "main", start, end,
                               dest.stat().st_size))
    cat = Catalog(save / ".cctv" / c.CATALOG_FILENAME, save)
    cat.add_rows(rows)
    cat.close()
    return rows


def write_config(tmp: Path, cameras: list[str]) -> Path:
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps({"cameras": [{"cameraName": n, "source": "test"} for n in cameras],
                               "storageConfig": {"savePath": str(tmp / "rec")}}))
    return cfg


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cctv_daemon", *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")


def packets(path: Path, kind: str = "v") -> list[tuple[float, str]]:
    """(pts seconds, flags) of every packet, edit lists ignored: what any player could show."""
    res = subprocess.run(["ffprobe", "-v", "error", "-ignore_editlist", "1", "-select_streams", kind,
                          "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True)
    return [(float(p), f) for p, f in (ln.split(",")[:2] for ln in res.stdout.split())]


def decode_errors(path: Path) -> str:
    res = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True,
                         text=True, check=False)
    return res.stderr.strip() + ("" if res.returncode == 0 else f" (exit {res.returncode})")


def expected_frames(start: float, end: float, first_segment_end: float, seg_s: int, frames: int) -> int:
    """Frames from the keyframe at or before `start` to the frame at or after `end`, inclusive. Frame k of a
    run is at k/FPS, except that ffmpeg makes the run's first frame longer (the first segment ends at
    `first_segment_end`, a little after seg_s): every later frame is shifted by that much."""
    shift = first_segment_end - seg_s
    times = [0.0] + [k / FPS + shift for k in range(1, frames)]
    first = max(k for k in range(0, frames, FPS) if times[k] <= start + 1e-9)
    last = min((k for k in range(frames) if times[k] >= end - 1e-9), default=frames - 1)
    return last - first + 1


def format_tags(path: Path) -> dict[str, str]:
    res = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    tags: dict[str, str] = json.loads(res.stdout)["format"].get("tags", {})
    return tags


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One camera `t1`: a 24 s run in 3 s segments, then 5 s with no footage, then a second run (same codec
    setup, as after a daemon restart) of 9 s."""
    tmp = tmp_path_factory.mktemp("export")
    save = tmp / "rec"
    run1 = make_run(tmp / "run1", 24, 3)
    (tmp / "first_end").write_text(str(run1[0][2]))
    catalog_run(save, "t1", run1, T0)
    catalog_run(save, "t1", make_run(tmp / "run2", 9, 3), T0 + 24 + 5)
    write_config(tmp, ["t1", "t2"])
    return tmp


@pytest.mark.parametrize("start,end", [(4.35, 13.72), (3.0, 6.0), (0.0, 2.05), (7.9, 8.15)])
def test_clip_holds_only_the_asked_range(footage: Path, start: float, end: float) -> None:
    out = footage / f"clip-{start}-{end}.mp4"
    res = cli("export", "--config", str(footage / "config.json"), "--camera", "t1", "--from", iso(T0 + start),
              "--to", iso(T0 + end), "-o", str(out), "--force")
    assert res.returncode == 0, res.stderr
    pkts = packets(out)
    # from the keyframe at or before --from (one a second) to the frame at or after --to, nothing else
    first_end = float((footage / "first_end").read_text())
    assert len(pkts) == expected_frames(start, end, first_end, 3, 24 * FPS), (len(pkts), start, end)
    assert pkts[0] == (0.0, "K_") and all(p[0] < pkts[-1][0] + 1e-9 for p in pkts)
    audio = packets(out, "a")
    assert audio and abs(audio[-1][0] - pkts[-1][0]) < 0.15 and audio[0][0] < 0.05
    assert decode_errors(out) == ""
    # SHA-256 on stdout, alone, as sha256sum prints it; the summary on stderr
    assert res.stdout == f"{hashlib.sha256(out.read_bytes()).hexdigest()}  {out}\n"
    assert out.name in res.stderr
    first_key = max(k for k in range(24) if (k + first_end - 3 if k else 0) <= start + 1e-9)
    first_key_time = first_key + (first_end - 3 if first_key else 0)
    assert format_tags(out)["creation_time"].startswith(iso(T0 + first_key_time)[:19])


def test_clip_over_a_gap_and_a_restart_lists_the_gap(footage: Path) -> None:
    out = footage / "gap.mp4"
    res = cli("export", "--config", str(footage / "config.json"), "--camera", "t1", "--from", iso(T0 + 20.5),
              "--to", iso(T0 + 32.0), "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() and doc["joinedBy"] == "fragments"
    assert len(doc["gaps"]) == 1
    gap = doc["gaps"][0]
    assert abs(gap["startEpoch"] - (T0 + 24)) < 0.2 and abs(gap["endEpoch"] - (T0 + 29)) < 0.2
    # 20 s .. 24 s of run 1 (40 frames), then run 2 from 29 s to the frame at 32 s (31 frames)
    pkts = packets(out)
    assert len(pkts) == 40 + 31, len(pkts)
    assert [p for p, f in pkts if f.startswith("K")][:6] == pytest.approx([0, 1, 2, 3, 4, 5], abs=0.03)
    audio = packets(out, "a")  # audio stays with the video across segments and the restart
    assert abs(audio[-1][0] - pkts[-1][0]) < 0.15
    assert all(b > a for (a, _f), (b, _g) in itertools.pairwise(audio))
    assert decode_errors(out) == ""
    assert doc["clip"]["from"].startswith(iso(T0 + 20)[:19]) and abs(doc["clip"]["seconds"] - 7.1) < 0.05


def test_runs_with_another_codec_setup_still_export(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    catalog_run(save, "t1", make_run(tmp_path / "a", 6, 3, size="320x180"), T0)
    catalog_run(save, "t1", make_run(tmp_path / "b", 6, 3, size="256x144"), T0 + 6)
    cat = Catalog(save / ".cctv" / c.CATALOG_FILENAME, save)
    p = export.plan(cat, "t1", T0 + 1.5, T0 + 10.0)
    assert len(p.groups) == 2
    out = tmp_path / "mixed.mp4"
    result = export.export("ffmpeg", p, out)
    assert result.joined_by == "ffmpeg" and result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(packets(out)) == (6 - 1) * FPS + 4 * FPS + 1
    assert decode_errors(out) == ""
    sizes = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "frame=width", "-of", "csv=p=0", str(out)],
                           capture_output=True, text=True, check=True).stdout.split()
    sizes = [x.strip(",") for x in sizes]
    assert sizes.count("320") == 50 and sizes.count("256") == 41
    if shutil.which("chromium"):
        web = tmp_path / "web" / "clip.mp4"
        web.parent.mkdir()
        os.link(out, web)
        assert chromium_plays(web, result.seconds).startswith("ENDED")
    assert format_tags(out)["creation_time"].startswith(iso(T0 + 1)[:19])


def test_audio_stays_with_the_video_over_many_joins(tmp_path: Path) -> None:
    """ffmpeg writes each segment's first audio sample at 0 with a stretched duration; joined naively, audio
    slips a few ms later at every join (0.45 s over 60 joins). It must stay continuous and in step."""
    save = tmp_path / "rec"
    catalog_run(save, "t1", make_run(tmp_path / "a", 40, 1), T0)
    cat = Catalog(save / ".cctv" / c.CATALOG_FILENAME, save)
    out = tmp_path / "av.mp4"
    export.export("ffmpeg", export.plan(cat, "t1", T0, T0 + 100), out)
    video, audio = packets(out), packets(out, "a")
    steps = {round(b - a, 4) for (a, _f), (b, _g) in itertools.pairwise(audio)}
    assert max(steps) < 0.0215 and min(steps) > 0.0212, steps  # 1024 samples at 48 kHz, no holes
    audio_end, video_end = audio[-1][0] + 1024 / 48000, video[-1][0] + 1 / FPS
    assert abs(audio_end - video_end) < 0.03, (audio_end, video_end)


def test_b_frames(tmp_path: Path) -> None:
    """A camera sending B-frames (composition offsets): the clip decodes, shows every frame from the keyframe to
    past --to (a decode-order cut can carry up to the reorder depth more), and has no edit list."""
    save = tmp_path / "rec"
    run = make_run(tmp_path / "bf", 9, 3, bframes=2)
    catalog_run(save, "t1", run, T0)
    cat = Catalog(save / ".cctv" / c.CATALOG_FILENAME, save)
    out = tmp_path / "bf.mp4"
    export.export("ffmpeg", export.plan(cat, "t1", T0 + 1.5, T0 + 7.45), out)
    assert decode_errors(out) == ""
    pts = sorted(p for p, _f in packets(out))
    steps = [round(b - a, 3) for a, b in itertools.pairwise(pts)]
    assert set(steps) == {0.1}, steps  # no frame missing in presentation order
    shown = len(pts)
    first_end = run[0][2]
    assert expected_frames(1.5, 7.45, first_end, 3, 90) <= shown <= expected_frames(1.5, 7.45, first_end, 3, 90) + 2
    assert b"elst" not in out.read_bytes()[:4096]


def test_drifting_camera_clock_maps_wall_time_to_media_time(tmp_path: Path) -> None:
    """Segments holding less media than the wall time they span (camera clock 5 % slow): the range is found by
    spreading each segment's wall time over its media."""
    save = tmp_path / "rec"
    run = make_run(tmp_path / "d", 30, 10, audio=False)
    catalog_run(save, "t1", run, T0, rate=1.05)
    cat = Catalog(save / ".cctv" / c.CATALOG_FILENAME, save)
    out = tmp_path / "drift.mp4"
    start, end = 14.5, 23.45  # media seconds
    result = export.export("ffmpeg", export.plan(cat, "t1", T0 + 1.05 * start, T0 + 1.05 * end), out)
    assert len(packets(out)) == expected_frames(start, end, run[0][2], 10, 300)
    assert abs(result.clip_start - (T0 + 1.05 * (14 + run[0][2] - 10))) < 0.01


def test_segment_cut_by_a_crash(tmp_path: Path) -> None:
    """The last segment of a killed run ends inside a fragment: the export takes its complete fragments."""
    save = tmp_path / "rec"
    run = make_run(tmp_path / "k", 6, 3)
    last = run[-1][0]
    data = last.read_bytes()
    third = data.find(b"moof", data.find(b"moof", data.find(b"moof") + 4) + 4) - 4
    last.write_bytes(data[:third + 1000])  # the 3rd fragment's moof and part of its mdat
    catalog_run(save, "t1", run, T0)
    cat = Catalog(save / ".cctv" / c.CATALOG_FILENAME, save)
    out = tmp_path / "cut.mp4"
    export.export("ffmpeg", export.plan(cat, "t1", T0, T0 + 6.5), out)
    assert decode_errors(out) == ""
    assert len(packets(out)) == 5 * FPS  # 3 s + 2 of the 3 fragments of the second segment


def test_unreadable_segment_is_skipped_and_reported_as_a_gap(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    run = make_run(tmp_path / "u", 9, 3)
    run[1][0].write_bytes(run[1][0].read_bytes()[:500])  # killed before its moov was complete
    catalog_run(save, "t1", run, T0)
    cfg = write_config(tmp_path, ["t1"])
    out = tmp_path / "u.mp4"
    res = cli("export", "--config", str(cfg), "--camera", "t1", "--from", iso(T0 + 1.5), "--to", iso(T0 + 8),
              "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert len(doc["skipped"]) == 1 and doc["skipped"][0]["path"].endswith("T080003Z_20270115T080006Z.mp4")
    assert "skipped unreadable segment" in res.stderr
    assert len(doc["gaps"]) == 1 and abs(doc["gaps"][0]["seconds"] - 3.0) < 0.1
    assert decode_errors(out) == ""
    assert len(packets(out)) == 20 + 21  # the keyframe before 1.5 s .. 3 s, then 6 s to the frame at/after 8 s


def test_progress_reaches_100_and_stdout_is_only_data(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    catalog_run(save, "t1", make_run(tmp_path / "run", 70, 10, size="160x90", audio=False), T0)
    cfg = write_config(tmp_path, ["t1"])
    out = tmp_path / "long.mp4"
    res = cli("export", "--config", str(cfg), "--camera", "t1", "--from", iso(T0 + 2), "--to", iso(T0 + 65),
              "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "100%" in res.stderr
    assert res.stdout.splitlines() == [f"{hashlib.sha256(out.read_bytes()).hexdigest()}  {out}"]
    assert len(packets(out)) == 63 * FPS + 1
    # the file is never left half written, and an existing one is not overwritten without --force
    again = cli("export", "--config", str(cfg), "--camera", "t1", "--from", iso(T0 + 2), "--to", iso(T0 + 5),
                "-o", str(out))
    assert again.returncode == c.EXIT_RUNTIME and "--force" in again.stderr and again.stdout == ""


PAGE = """<html><body><video id="v" src="clip.mp4" muted autoplay playsinline></video><pre id="o">start</pre>
<script>
const v = document.getElementById('v'), o = document.getElementById('o');
v.addEventListener('error', () => { o.textContent = 'ERROR ' + (v.error && v.error.message); });
v.addEventListener('ended', () => { const q = v.getVideoPlaybackQuality();
  o.textContent = 'ENDED ' + v.currentTime.toFixed(2) + ' ' + q.totalVideoFrames + ' ' + q.droppedVideoFrames; });
</script><img src="/wait"></body></html>"""


def chromium_plays(clip: Path, seconds: float) -> str:
    """Play the clip in headless Chromium from a loopback HTTP server; the page's load event (and so the DOM
    dump) waits on /wait, which answers after the clip's duration. Returns the page's verdict."""
    import http.server
    import threading
    import time

    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium not installed (Debian package `chromium`)")
    clip.with_name("page.html").write_text(PAGE)
    directory = str(clip.parent)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, directory=directory, **kw)  # type: ignore[arg-type]

        def do_GET(self) -> None:
            if self.path == "/wait":
                time.sleep(seconds + 4)
                self.send_response(204)
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = subprocess.run([exe, "--headless=new", "--no-sandbox", "--disable-gpu",
                              "--autoplay-policy=no-user-gesture-required", "--dump-dom",
                              f"http://127.0.0.1:{server.server_address[1]}/page.html"],
                             capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        server.shutdown()
    start = res.stdout.find('<pre id="o">')
    return res.stdout[start + 12:res.stdout.find("</pre>", start)] if start >= 0 else res.stdout[-300:]


# timing: Chromium plays the clip in real time and counts the frames it dropped; starved of CPU by other tests
# (4 workers on 2 cores) it dropped 2 of 43, so this runs in the timing pass, alone on the machine.
@pytest.mark.timing
def test_clip_plays_to_the_end_in_chromium(tmp_path: Path) -> None:
    save = tmp_path / "rec"
    catalog_run(save, "t1", make_run(tmp_path / "r", 6, 3), T0)
    out = tmp_path / "web" / "clip.mp4"
    cat = Catalog(save / ".cctv" / c.CATALOG_FILENAME, save)
    result = export.export("ffmpeg", export.plan(cat, "t1", T0 + 1.5, T0 + 5.2), out)
    verdict = chromium_plays(out, result.seconds)
    frames = len(packets(out))
    assert verdict.startswith("ENDED"), verdict
    _, t, total, dropped = verdict.split()
    assert abs(float(t) - result.seconds) < 0.15 and int(total) == frames and int(dropped) == 0, verdict


def test_unknown_camera_is_named_with_the_known_ones(footage: Path) -> None:
    res = cli("export", "--config", str(footage / "config.json"), "--camera", "nosuch", "--from", iso(T0),
              "--to", iso(T0 + 5), "-o", str(footage / "x.mp4"))
    assert res.returncode == c.EXIT_USAGE
    assert "unknown camera 'nosuch'" in res.stderr and "t1, t2" in res.stderr and res.stdout == ""
    assert "Traceback" not in res.stderr
    # a known camera without footage in the range: exit 1, "no footage"
    res = cli("export", "--config", str(footage / "config.json"), "--camera", "t2", "--from", iso(T0),
              "--to", iso(T0 + 5), "-o", str(footage / "x.mp4"))
    assert res.returncode == c.EXIT_RUNTIME and "no footage" in res.stderr and res.stdout == ""


def test_export_before_anything_was_recorded(tmp_path: Path) -> None:
    """No catalog yet: nothing on stdout, no catalog created, the camera named."""
    cfg = write_config(tmp_path, ["gate"])
    for camera, code in (("nosuch", c.EXIT_USAGE), ("gate", c.EXIT_RUNTIME)):
        res = cli("export", "--config", str(cfg), "--camera", camera, "--from", iso(T0), "--to", iso(T0 + 5),
                  "-o", str(tmp_path / "x.mp4"))
        assert res.returncode == code and res.stdout == "" and repr(camera) in res.stderr, res
    assert "known cameras: gate" in cli("export", "--config", str(cfg), "--camera", "x", "--from", iso(T0),
                                        "--to", iso(T0 + 5), "-o", str(tmp_path / "x.mp4")).stderr
    assert not (tmp_path / "rec" / ".cctv" / c.CATALOG_FILENAME).exists()
