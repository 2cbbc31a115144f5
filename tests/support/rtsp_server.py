#!/usr/bin/python3
"""A small real RTSP server for tests (GStreamer GstRtspServer).

Run it with Debian's ``/usr/bin/python3`` (the interpreter that has ``gi``), not the project's venv::

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 \\
        --mount /cam1=video:/tmp/test.h264 --mount /audio=video+pcmu:/tmp/test.h264 \\
        --user admin --password secret

Every mount loops a pre-encoded Annex-B H.264 file (no B-frames) in real time; ``video+pcmu`` adds a
G.711 mu-law audio track from ``audiotestsrc``; ``h265`` loops an Annex-B H.265 file instead; ``video-udp``
is ``video`` that refuses RTSP over TCP (``461 Unsupported transport``, UDP only). ``--auth digest`` asks for
digest instead of basic authentication. Media are shared per mount. Prints ``READY <port>`` on stdout
once listening; exits cleanly (status 0) on SIGTERM / SIGINT.

Time tests (a clock the daemon does not own): ``--keyframe-log FILE`` appends ``<mount> <wall epoch> <pts s>``
for every keyframe the payloader gets (after the real-time pacing, i.e. when it is sent); ``--clock /cam=1.01``
gives a mount's media a pipeline clock running 1 % fast (a camera whose clock is wrong); ``--jump /cam=20:5``
shifts that mount's timestamps by +5 s (negative: back) from 20 s of media on (a camera's clock reset).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

KINDS = ("video", "video+pcmu", "h265", "video-udp")


@dataclass(frozen=True)
class Mount:
    path: str
    kind: str
    file: str


def parse_mount(spec: str) -> Mount:
    """Parse ``/path=kind:/file.h264``."""
    try:
        path, rest = spec.split("=", 1)
        kind, file = rest.split(":", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --mount {spec!r}; want /path=kind:/file.h264") from None
    if not path.startswith("/") or kind not in KINDS or not file:
        raise argparse.ArgumentTypeError(f"bad --mount {spec!r}; kind must be one of {KINDS}")
    return Mount(path, kind, file)


def launch_line(mount: Mount) -> str:
    location = mount.file.replace("\\", "\\\\").replace('"', '\\"')
    # identity sync=true paces the (non-live) file source against the pipeline clock: real-time playback.
    video = (
        f'multifilesrc location="{location}" loop=true ! h264parse name=parse0 ! '
        "video/x-h264,stream-format=byte-stream,alignment=au ! identity name=pace0 sync=true ! "
        "rtph264pay name=pay0 pt=96 config-interval=1"
    )
    if mount.kind == "h265":
        video = (
            f'multifilesrc location="{location}" loop=true ! h265parse name=parse0 ! '
            "video/x-h265,stream-format=byte-stream,alignment=au ! identity sync=true ! "
            "rtph265pay name=pay0 pt=96 config-interval=1"
        )
    if mount.kind in ("video", "h265", "video-udp"):
        return f"( {video} )"
    audio = (
        "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 samplesperbuffer=160 ! "
        "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay pt=0 name=pay1"
    )
    return f"( {video} {audio} )"


def _fix_pts(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
    # h264parse leaves PTS unset on raw byte-stream input; the file has no B-frames, so PTS == DTS.
    buf = info.get_buffer()
    if buf is not None and buf.pts == Gst.CLOCK_TIME_NONE and buf.dts != Gst.CLOCK_TIME_NONE:
        buf.pts = buf.dts
    return Gst.PadProbeReturn.OK


@dataclass
class TimeOptions:
    keyframe_log: Any = None  # an open text file
    rate: float | None = None  # media clock rate against the wall clock (1.01 = 1 % fast)
    jump_after_s: float | None = None
    jump_by_s: float = 0.0


def _keyframe_logger(mount: str, out: Any) -> Any:
    def probe(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        if buf is not None and not buf.has_flags(Gst.BufferFlags.DELTA_UNIT):
            pts = buf.pts / Gst.SECOND if buf.pts != Gst.CLOCK_TIME_NONE else -1.0
            out.write(f"{mount} {time.time():.6f} {pts:.6f}\n")
            out.flush()
        return Gst.PadProbeReturn.OK

    return probe


def _jumper(identity: Gst.Element, after_s: float, by_s: float) -> Any:
    """A camera whose clock is reset: from ``after_s`` of media on, its timestamps are ``by_s`` off. The pacing
    identity is told the same offset (its ts-offset), so the server keeps sending in real time."""
    offset = int(by_s * Gst.SECOND)
    start = int(after_s * Gst.SECOND)
    done = [False]

    def probe(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        if buf is None or buf.pts == Gst.CLOCK_TIME_NONE or buf.pts < start:
            return Gst.PadProbeReturn.OK
        if not done[0]:
            done[0] = True
            identity.set_property("ts-offset", -offset)
            _unsync_sinks(identity)
        # In place, like _fix_pts (PyGObject has no make_writable; an exception here would drop the buffer).
        buf.pts = max(0, buf.pts + offset)
        if buf.dts != Gst.CLOCK_TIME_NONE:
            buf.dts = max(0, buf.dts + offset)
        return Gst.PadProbeReturn.OK

    return probe


def _unsync_sinks(element: Gst.Element) -> None:
    """The server's own sinks must not pace on the (jumped) timestamps, or the server itself would wait out a
    forward jump (its streaming thread blocks): identity sync=true already paces the source in real time. Done at
    the jump: rtsp-server sets its sinks up when a client sets up its transport."""
    pipeline = element
    while pipeline.get_parent() is not None:
        pipeline = pipeline.get_parent()
    it = pipeline.iterate_recurse()
    while True:
        res, child = it.next()
        if res != Gst.IteratorResult.OK:
            break
        factory = child.get_factory()
        if child.find_property("sync") is not None and (factory is None or factory.get_name() != "identity"):
            child.set_property("sync", False)


def _on_media_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia,
                        mount: str = "", opts: TimeOptions | None = None) -> None:
    element = media.get_element()
    parse = element.get_by_name("parse0") if element is not None else None
    if parse is None:
        print("rtsp_server: parse0 not found in media", file=sys.stderr, flush=True)
        return
    pad = parse.get_static_pad("src")
    pad.add_probe(Gst.PadProbeType.BUFFER, _fix_pts)
    if opts is None:
        return
    if opts.rate is not None:
        clock = Gst.SystemClock.obtain().__class__()
        now = clock.get_internal_time()
        clock.set_calibration(now, now, round(opts.rate * 100_000), 100_000)
        media.set_clock(clock)
    pay_sink = element.get_by_name("pay0").get_static_pad("sink")
    if opts.jump_after_s is not None:
        pace = element.get_by_name("pace0")
        pace.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER,
                                               _jumper(pace, opts.jump_after_s, opts.jump_by_s))
    if opts.keyframe_log is not None:
        pay_sink.add_probe(Gst.PadProbeType.BUFFER, _keyframe_logger(mount, opts.keyframe_log))


def time_options(args: argparse.Namespace, path: str) -> TimeOptions:
    opts = TimeOptions(keyframe_log=getattr(args, "keyframe_file", None))
    for spec in getattr(args, "clock", []):
        mount, _, rate = spec.partition("=")
        if mount == path:
            opts.rate = float(rate)
    for spec in getattr(args, "jump", []):
        mount, _, rest = spec.partition("=")
        if mount == path:
            after, _, by = rest.partition(":")
            opts.jump_after_s, opts.jump_by_s = float(after), float(by)
    return opts


def build_server(args: argparse.Namespace) -> GstRtspServer.RTSPServer:
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    with_auth = args.user is not None
    if with_auth:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        if getattr(args, "auth", "basic") == "digest":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password or "", token)
        else:
            basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password or "")
            auth.add_basic(basic, token)
        server.set_auth(auth)
    for mount in args.mount:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(mount))
        factory.set_shared(True)
        if mount.kind == "video-udp":
            factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP)  # a TCP SETUP gets 461 Unsupported transport
        factory.connect("media-configure", _on_media_configure, mount.path, time_options(args, mount.path))
        if with_auth:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
            permissions.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
            factory.set_permissions(permissions)
        mounts.add_factory(mount.path, factory)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", type=parse_mount, action="append", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--auth", choices=("basic", "digest"), default="basic")
    parser.add_argument("--keyframe-log", help="append '<mount> <wall epoch> <pts>' per keyframe sent")
    parser.add_argument("--clock", action="append", default=[], help="/mount=RATE: media clock rate (1.01)")
    parser.add_argument("--jump", action="append", default=[], help="/mount=AFTER_S:BY_S: timestamps jump")
    args = parser.parse_args(argv)
    args.keyframe_file = open(args.keyframe_log, "a", encoding="utf-8") if args.keyframe_log else None  # noqa: SIM115
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")

    Gst.init(None)
    server = build_server(args)
    loop = GLib.MainLoop()

    def _quit(*_: Any) -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, _quit)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, _quit)
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 2
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
