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
"""

from __future__ import annotations

import argparse
import signal
import sys
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
        "video/x-h264,stream-format=byte-stream,alignment=au ! identity sync=true ! "
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


def _on_media_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
    element = media.get_element()
    parse = element.get_by_name("parse0") if element is not None else None
    if parse is None:
        print("rtsp_server: parse0 not found in media", file=sys.stderr, flush=True)
        return
    pad = parse.get_static_pad("src")
    pad.add_probe(Gst.PadProbeType.BUFFER, _fix_pts)


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
        factory.connect("media-configure", _on_media_configure)
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
    args = parser.parse_args(argv)
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
