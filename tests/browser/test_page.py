"""The page (cctv_daemon/api/static) in real headless Chromium against a real daemon with `test` cameras: it
lists the cameras, the live view updates, a click on a recording plays it, the stop button stops recording, it
works at a 390 px wide viewport, and it carries no secret."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

from tests.browser.conftest import PHONE, api_url, screenshot
from tests.conftest import DaemonFactory
from tests.support.daemon import DaemonProc, pattern_camera, wait_for

STATIC = Path(__file__).resolve().parents[2] / "cctv_daemon" / "api" / "static"


def _daemon(daemon_factory: DaemonFactory, *cameras: dict[str, Any]) -> DaemonProc:
    d = daemon_factory({"cameras": list(cameras), "api": {"port": 0}})
    api_url(d)
    return d


def _card(page: Any, camera: str) -> Any:
    return page.locator(f"article.camera[data-camera='{camera}']")


def _snapshot_pixels(page: Any, camera: str) -> str:
    """The live view's current picture, as a data URL of its pixels ('' until it has one)."""
    return str(page.evaluate("""(camera) => {
        const img = document.querySelector(`article[data-camera="${camera}"] img.snapshot`);
        if (!img || !img.complete || !img.naturalWidth) return "";
        const c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext("2d").drawImage(img, 0, 0);
        return c.toDataURL("image/png");
    }""", camera))


def test_page_lists_cameras_and_live_view_updates(daemon_factory: DaemonFactory, open_page: Any, tmp_path: Path,
                                                   record_property: Any) -> None:
    # the snapshot live view (the fallback when there is no HLS live view: tests/browser/test_live.py has that)
    d = _daemon(daemon_factory, pattern_camera("gate", liveView=False), pattern_camera("yard", liveView=False))
    d.wait_segments("gate", 2, 60)
    page = open_page(d)
    names = page.locator("article.camera h2.name").all_text_contents()
    assert names == ["gate", "yard"]
    wait_for(lambda: _card(page, "gate").locator(".state").text_content() == "recording", 30, "gate shown recording")
    first = wait_for(lambda: _snapshot_pixels(page, "gate"), 30, "a first live picture of gate")
    # the test pattern shows a running clock: a later snapshot is a different picture
    wait_for(lambda: (p := _snapshot_pixels(page, "gate")) and p != first, 30, "the live picture to change")
    assert int(_card(page, "gate").locator(".live").get_attribute("data-updates")) >= 2
    # the day's recordings are on the timeline, local time with UTC on hover
    wait_for(lambda: _card(page, "gate").locator(".timeline .rec").count() >= 1, 30, "recordings on the timeline")
    tick = _card(page, "gate").locator(".ticks span").first
    assert re.fullmatch(r"\d\d:\d\d", tick.text_content() or "")
    assert (tick.get_attribute("title") or "").endswith("Z")
    wait_for(lambda: page.locator("#conn").text_content() == "live", 30, "the event stream connected")
    shot = screenshot(page, tmp_path, "page-desktop", record_property)
    assert shot.stat().st_size > 10_000


def test_click_on_a_recording_plays_it(daemon_factory: DaemonFactory, open_page: Any) -> None:
    d = _daemon(daemon_factory, pattern_camera("gate", duration=3))
    d.wait_segments("gate", 2, 60)
    page = open_page(d)
    card = _card(page, "gate")
    card.locator(".zoom button[data-zoom='600']").click()  # 10 minutes: the recordings are wide enough to aim at
    rec = card.locator(".timeline .rec").last
    wait_for(lambda: rec.count() == 1 and rec.bounding_box() and rec.bounding_box()["width"] > 4, 30,
             "a recording on the 10-minute timeline")
    page.evaluate("""() => {
        const v = document.querySelector('article[data-camera="gate"] .player video');
        window.__played = 0; let last = null;
        v.addEventListener("timeupdate", () => {
            const d = last === null ? 0 : v.currentTime - last;
            if (d > 0 && d < 1) window.__played += d;
            last = v.currentTime;
        });
        v.addEventListener("emptied", () => { last = null; });
    }""")
    box = rec.bounding_box()
    card.locator(".timeline").click(position={"x": box["x"] - card.locator(".timeline").bounding_box()["x"]
                                              + box["width"] / 2, "y": 20})
    video = card.locator(".player video")
    wait_for(lambda: video.is_visible(), 15, "the player shown")
    played = wait_for(lambda: (p := page.evaluate("window.__played")) >= 1.0 and p, 30,
                      "the video's currentTime to advance by 1 s")
    assert played >= 1.0
    state = page.evaluate("""() => { const v = document.querySelector('article[data-camera="gate"] .player video');
        return {error: v.error && v.error.code, w: v.videoWidth, src: v.currentSrc}; }""")
    assert state["error"] is None and state["w"] > 0
    assert "/api/segments/" in state["src"] and "sig=" in state["src"]  # the signed video URL
    assert not card.locator(".unplayable").is_visible()
    assert card.locator(".seg-info time").first.get_attribute("title").endswith("Z (UTC)")


def test_stop_button_stops_recording(daemon_factory: DaemonFactory, open_page: Any) -> None:
    d = _daemon(daemon_factory, pattern_camera("gate"), pattern_camera("yard"))
    d.wait_segments("gate", 2, 60)
    page = open_page(d)
    card = _card(page, "gate")
    card.locator("button.stop").click()
    wait_for(lambda: card.locator(".state").text_content() == "stopped", 30, "gate shown stopped on the page")
    wait_for(lambda: len(d.ffmpegs()) == 1, 30, "gate's ffmpeg gone (yard's left)")
    stopped_at = len(d.segments("gate"))
    yard_at = len(d.segments("yard"))
    # the other camera goes on: by the time it made 3 more segments, gate (1 s segments) made none
    d.wait_segments("yard", yard_at + 3, 60)
    assert len(d.segments("gate")) == stopped_at
    assert _card(page, "yard").locator(".state").text_content() == "recording"
    # the choice is the daemon's, not the page's: status says so too
    st = d.cli("status", "--json")
    assert '"gate"' in st.stdout and st.returncode == 0
    # start again from the page: recording resumes
    card.locator("button.start").click()
    wait_for(lambda: card.locator(".state").text_content() == "recording", 30, "gate recording again")
    d.wait_segments("gate", stopped_at + 2, 60)


def test_page_at_390px_wide(daemon_factory: DaemonFactory, open_page: Any, tmp_path: Path,
                           record_property: Any) -> None:
    d = _daemon(daemon_factory, pattern_camera("gate"), pattern_camera("yard"))
    d.wait_segments("gate", 2, 60)
    page = open_page(d, viewport=PHONE)
    wait_for(lambda: _snapshot_pixels(page, "gate"), 30, "a live picture of gate")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    for cam in ("gate", "yard"):
        box = _card(page, cam).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        for sel in ("button.start", "button.stop", "button.do-record", ".timeline"):
            b = _card(page, cam).locator(sel).bounding_box()
            assert b and b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"], (cam, sel, b)
            assert b["height"] >= 28 or sel == ".timeline", (cam, sel, b)  # big enough for a finger
    screenshot(page, tmp_path, "page-390px", record_property)


def test_no_secret_in_the_page(daemon_factory: DaemonFactory, open_page: Any) -> None:
    password = "pw-S3cret-in-config"
    rtsp_cam = {"cameraName": "door", "url": "rtsp://127.0.0.1:9/stream", "userName": "admin",
                "password": password, "videoDuration": 1}
    d = _daemon(daemon_factory, pattern_camera("gate"), rtsp_cam)
    base = api_url(d)
    page = open_page(d)
    tokens = d.state_dir.joinpath("api-tokens.json").read_text()
    secrets = [password, *re.findall(r'"([A-Za-z0-9_-]{30,})"', tokens)]
    assert len(secrets) == 4  # the password, the viewer and admin tokens, the signing key
    html = page.content()
    shipped = {p.name: p.read_text() for p in STATIC.iterdir() if p.is_file()}
    for name in shipped:  # what the server sends is what the package ships
        with urllib.request.urlopen(f"{base}/{name}") as resp:
            shipped[name] += resp.read().decode()
    for secret in secrets:
        assert secret not in html
        for name, text in shipped.items():
            assert secret not in text, name
    # the session cookie is HttpOnly: the page's scripts cannot read it
    assert page.evaluate("document.cookie") == ""


def test_signed_out_page_says_how_to_sign_in(daemon_factory: DaemonFactory, browser: Any) -> None:
    d = _daemon(daemon_factory, pattern_camera("gate"))
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        page.goto(api_url(d) + "/")
        page.wait_for_selector("body.signed-out", timeout=30_000)
        assert "cctv-daemon ui-url" in (page.locator("#message").text_content() or "")
        assert page.locator("article.camera").count() == 0
    finally:
        ctx.close()


def test_docs_render_offline(daemon_factory: DaemonFactory, browser: Any) -> None:
    """/docs (Swagger UI) renders the API's OpenAPI 3.1 document with every request that leaves the daemon
    blocked: its script and stylesheet come from the daemon, not a CDN."""
    d = _daemon(daemon_factory, pattern_camera("gate"))
    base = api_url(d)
    ctx = browser.new_context()
    outside: list[str] = []
    errors: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(base + "/"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    try:
        ctx.route("**/*", route)
        page = ctx.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/docs")
        page.wait_for_selector(".opblock", timeout=30_000)  # one block per operation: the document rendered
        text = page.locator("#swagger-ui").inner_text()
        assert "/api/segments" in text and "/api/events" in text
        assert page.locator(".opblock").count() >= 15
        assert not page.locator(".errors-wrapper").count(), page.locator(".errors-wrapper").inner_text()
    finally:
        ctx.close()
    assert not outside, f"/docs reached outside the daemon: {outside}"
    assert not errors, errors


def test_timeline_follows_the_listing_pages(daemon_factory: DaemonFactory, open_page: Any) -> None:
    """The page reads a day's segments page by page (`next`/`cursor`): with pages cut to 2 segments (the request
    rewritten on its way), the timeline still holds every segment the API lists."""
    from tests.support.api import Api

    d = _daemon(daemon_factory, pattern_camera("gate", duration=1))
    d.wait_segments("gate", 7, 60)
    listed = len(Api(d).segments(camera="gate")["segments"])
    assert listed >= 6
    asked: list[str] = []

    def smaller_pages(route: Any) -> None:
        url = route.request.url.replace("limit=2000", "limit=2")
        asked.append(url)
        route.continue_(url=url)

    page = open_page(d, route=("**/api/segments?*", smaller_pages))
    count = "els => els.reduce((n, e) => n + Number(e.dataset.count || 1), 0)"
    wait_for(lambda: _card(page, "gate").locator(".timeline .rec").evaluate_all(count) >= listed, 30,
             "every listed segment on the timeline")
    assert sum("cursor=" in u for u in asked) >= listed // 2 - 1, asked
