"""The page's other actions in real headless Chromium against a real daemon: record N minutes with a label (the
label shown), select a range to download (the export plays), delete with a confirmation, a viewer without admin
buttons, an H.265 camera the browser cannot play (said so, download offered; from the codec the API gives, before
trying), and the upload state of recordings (from the upload events)."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.browser.conftest import api_url
from tests.browser.test_page import _card, _daemon
from tests.conftest import DaemonFactory
from tests.support.daemon import pattern_camera, wait_for


def _timeline_x(page: Any, card: Any, fraction: float) -> dict[str, float]:
    box = card.locator(".timeline").bounding_box()
    return {"x": box["width"] * fraction, "y": box["height"] / 2}


def test_record_label_select_download_and_delete(daemon_factory: DaemonFactory, open_page: Any,
                                                 tmp_path: Path) -> None:
    d = _daemon(daemon_factory, pattern_camera("gate", duration=2, mode="onDemand"))
    page = open_page(d)
    card = _card(page, "gate")
    card.locator("input.minutes").fill("2")
    card.locator("input.label").fill("incident-42")
    card.locator("button.do-record").click()
    wait_for(lambda: "incident-42" in (card.locator(".reason").text_content() or ""), 30,
             "the on-demand recording and its label shown")
    d.wait_segments("gate", 3, 60)
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    card = _card(page, "gate")
    wait_for(lambda: card.locator(".labels .chip").count() == 1, 30, "the label chip")
    assert card.locator(".labels .chip").text_content() == "incident-42"
    card.locator(".zoom button[data-zoom='600']").click()
    wait_for(lambda: card.locator(".timeline .rec.labelled").count() >= 1, 30, "labelled recordings on the timeline")
    # drag across the whole 10 minutes: a range to download
    tl = card.locator(".timeline")
    box = tl.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    link = card.locator(".selection a.download")
    assert link.is_visible()
    href = link.get_attribute("href")
    assert href.startswith("/api/export?camera=gate&from=")
    with page.expect_download() as dl:
        link.click()
    clip = tmp_path / "clip.mp4"
    dl.value.save_as(clip)
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                            str(clip)], capture_output=True, text=True, check=True)
    assert float(probe.stdout) >= 2.0
    # play the labelled chip's recording, then delete its segment (after confirming)
    card.locator(".labels .chip").click()
    wait_for(lambda: card.locator(".player").is_visible(), 15, "the player")
    assert "incident-42" in (card.locator(".seg-info").text_content() or "")
    card.locator(".player button.delete").click()
    dialog = page.locator("dialog#confirm")
    assert dialog.is_visible() and "removed for good" in (dialog.text_content() or "")
    before = set(d.segments("gate"))  # (the camera still records: new files come, none may go)
    page.locator("dialog#confirm button[value='cancel']").click()
    assert not dialog.is_visible()
    assert before <= set(d.segments("gate"))  # cancelled: nothing deleted
    card.locator(".player button.delete").click()
    page.locator("#confirm-ok").click()
    wait_for(lambda: "segment deleted" in (page.locator("#message").text_content() or ""), 30, "deleted")
    gone = before - set(d.segments("gate"))
    assert len(gone) == 1 and min(before) in gone  # the chip played the first labelled segment: that one went
    assert not card.locator(".player").is_visible()


def test_viewer_sees_no_admin_buttons(daemon_factory: DaemonFactory, open_page: Any) -> None:
    d = _daemon(daemon_factory, pattern_camera("gate"))
    d.wait_segments("gate", 2, 60)
    page = open_page(d, role="viewer")
    card = _card(page, "gate")
    assert page.locator("#role").text_content() == "viewer (read only)"
    assert not card.locator("button.stop").is_visible()
    assert not card.locator("button.do-record").is_visible()
    assert card.locator(".timeline").is_visible()


def test_h265_camera_says_it_cannot_play_and_offers_the_download(daemon_factory: DaemonFactory, open_page: Any,
                                                                  tmp_path: Path) -> None:
    """Chromium does not play H.265 (FIELD-NOTES). The daemon records H.264 from `test` cameras, so the segment's
    video response is replaced by an H.265 MP4 made with ffmpeg (route interception: the browser gets HEVC)."""
    hevc = tmp_path / "hevc.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", "3",
                    "-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=none", str(hevc)], check=True)
    d = _daemon(daemon_factory, pattern_camera("gate", duration=2))
    d.wait_segments("gate", 2, 60)
    page = open_page(d)
    page.route("**/api/segments/*/video?sig=*",
               lambda route: route.fulfill(status=200, body=hevc.read_bytes(), content_type="video/mp4"))
    card = _card(page, "gate")
    card.locator(".timeline").press("Enter")  # plays the latest recording
    wait_for(lambda: card.locator(".unplayable").is_visible(), 30, "the cannot-play message")
    assert "cannot play" in (card.locator(".unplayable").text_content() or "")
    href = card.locator(".unplayable a").get_attribute("href")
    assert href and "/video?sig=" in href
    assert not card.locator(".player video").is_visible()
    # the offered download is the real segment (outside the intercepted page)
    with urllib.request.urlopen(api_url(d) + href) as resp:
        assert resp.status == 200 and resp.read(12)[4:8] == b"ftyp"


def test_real_h265_camera_is_said_unplayable_before_trying(daemon_factory: DaemonFactory, open_page: Any) -> None:
    """A real H.265 camera (GStreamer RTSP server, stream copy tagged hvc1): /api/cameras and /api/segments/{id}
    give its codec; the card says at once that this browser cannot play H.265, and a click on a recording shows
    the download without the browser ever fetching the video."""
    from tests.support.api import Api
    from tests.support.media import make_h265
    from tests.support.rtsp import RtspServer

    server = RtspServer({"/h265": ("h265", make_h265())}).start()
    try:
        d = _daemon(daemon_factory, {"cameraName": "hevc", "url": server.url("/h265"), "videoDuration": 2})
        d.wait_segments("hevc", 2, 60)
        api = Api(d)
        cam_codec = wait_for(lambda: api.camera("hevc")["codec"], 30, "the camera's codec")
        assert cam_codec.startswith("hvc1.1."), cam_codec
        seg = api.segments(camera="hevc")["segments"][0]
        assert api.get(f"/api/segments/{seg['id']}", "viewer").json()["codec"] == cam_codec
        page = open_page(d)
        videos: list[str] = []
        page.on("request", lambda r: videos.append(r.url) if "/video" in r.url else None)
        card = _card(page, "hevc")
        wait_for(lambda: card.locator(".codec-note").is_visible(), 30, "the codec note")
        assert "cannot play H.265" in (card.locator(".codec-note").text_content() or "")
        assert card.get_attribute("data-codec") == cam_codec
        wait_for(lambda: card.locator(".timeline .rec").count() >= 1, 30, "recordings on the timeline")
        card.locator(".timeline").press("Enter")  # plays the latest recording
        wait_for(lambda: card.locator(".unplayable").is_visible(), 30, "the cannot-play message")
        assert card.locator(".unplayable a").get_attribute("href")
        assert not videos, videos  # said before trying: the video was never requested
    finally:
        server.close()


def test_h264_camera_has_no_codec_note(daemon_factory: DaemonFactory, open_page: Any) -> None:
    from tests.support.api import Api

    d = _daemon(daemon_factory, pattern_camera("gate", duration=2))
    d.wait_segments("gate", 1, 60)
    codec = wait_for(lambda: Api(d).camera("gate")["codec"], 30, "the camera's codec")
    assert codec.startswith("avc1.")
    page = open_page(d)
    card = _card(page, "gate")
    wait_for(lambda: card.get_attribute("data-codec") == codec, 30, "the codec on the card")
    assert not card.locator(".codec-note").is_visible()


def test_timeline_shows_uploads_as_their_events_arrive(daemon_factory: DaemonFactory, open_page: Any,
                                                       moto_server: Any) -> None:
    """With s3Config (moto), segments finished after the page loaded arrive by `segment_finished` without an upload
    state, then turn "uploaded" on the timeline when their `segment_uploaded` event arrives: no re-read of the
    listing. The played segment's line says its upload state."""
    from tests.integration.test_upload import BUCKET, s3_cfg, upload_config

    moto_server.client().create_bucket(Bucket=BUCKET)
    cfg = upload_config(s3_cfg(moto_server), creds=("testing", "testing"))
    cfg["cameras"] = [pattern_camera("gate", duration=1)]
    d = daemon_factory({**cfg, "api": {"port": 0}})
    api_url(d)
    d.wait_segments("gate", 2, 60)
    listings: list[str] = []
    page = open_page(d)
    page.on("request", lambda r: listings.append(r.url) if "/api/segments?" in r.url else None)
    card = _card(page, "gate")
    count = "els => els.reduce((n, e) => n + Number(e.dataset.count || 1), 0)"
    first = wait_for(lambda: card.locator(".timeline .rec").evaluate_all(count), 30, "recordings on the timeline")
    uploaded = ("els => els.filter(e => e.dataset.upload === 'uploaded')"
                ".reduce((n, e) => n + Number(e.dataset.count || 1), 0)")
    # more segments than the page first listed, all shown uploaded: the new ones only through the events
    wait_for(lambda: card.locator(".timeline .rec").evaluate_all(uploaded) >= first + 3, 60,
             "segments that arrived after the page loaded shown uploaded")
    assert not listings, listings  # no re-read of the listing: the events did it
    title = card.locator(".timeline .rec[data-upload='uploaded']").last.get_attribute("title") or ""
    assert title.endswith("· uploaded"), title
    card.locator(".timeline").press("Enter")  # plays the latest recording
    info = wait_for(lambda: re.search(r"· (uploaded|not uploaded yet)$", card.locator(".seg-info").text_content()
                                      or ""), 30, "the upload state shown")
    assert info
    assert d.stop() == 0
