"""The HLS live view in real headless Chromium (Debian's, which plays HLS natively): the card of a recording camera
shows a <video> of its live stream whose currentTime advances, within a few seconds of the wall clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import api_url, screenshot
from tests.conftest import DaemonFactory
from tests.support.daemon import pattern_camera, wait_for


def _video_time(page: Any, camera: str) -> float:
    return float(page.evaluate("""(camera) => {
        const v = document.querySelector(`article[data-camera="${camera}"] video.live-video`);
        return v ? v.currentTime : -1;
    }""", camera))


def test_live_video_plays(daemon_factory: DaemonFactory, open_page: Any, tmp_path: Path,
                          record_property: Any) -> None:
    d = daemon_factory({"cameras": [pattern_camera("gate")], "api": {"port": 0, "liveView": True}})
    api_url(d)
    d.wait_segments("gate", 1, 60)
    page = open_page(d)
    card = page.locator("article.camera[data-camera='gate']")
    wait_for(lambda: card.locator(".live").get_attribute("data-live") == "hls", 40, "the HLS live view chosen")
    first = wait_for(lambda: (t := _video_time(page, "gate")) > 0 and t, 30, "the live video playing")
    wait_for(lambda: _video_time(page, "gate") >= first + 3, 20, "the live video's currentTime advancing")
    # how far behind the live edge the player sits (seconds of media buffered ahead of what it shows)
    behind = float(page.evaluate("""() => {
        const v = document.querySelector("video.live-video");
        return v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0;
    }"""))
    assert behind < 5, behind
    assert card.locator("img.snapshot").is_hidden()
    shot = screenshot(page, tmp_path, "live-video", record_property)
    assert shot.stat().st_size > 10_000
