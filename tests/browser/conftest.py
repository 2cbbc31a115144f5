"""Browser tests: Debian's Chromium (headless) driven by Playwright for Python against a real daemon. Playwright's
own browser download cannot work here, so the system executable is launched (FIELD-NOTES: Chromium)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProc, wait_for

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def chromium_path() -> str:
    for path in CHROMIUM_CANDIDATES:
        if Path(path).exists():
            return path
    found = shutil.which("chromium")
    if found is None:  # a missing browser is a broken test machine, never a silent skip
        raise RuntimeError("Chromium is not installed (apt-get install -y chromium; .ci/test installs it)")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def api_url(d: DaemonProc) -> str:
    """Where the daemon's API listens ({stateDir}/api.json, written once it is listening)."""
    info = wait_for(lambda: _read_json(d.state_dir / "api.json"), 60, "the API listening (api.json)", proc=d.proc)
    return str(info["url"])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sign_in_link(d: DaemonProc, role: str = "admin") -> str:
    api_url(d)
    args = ["ui-url"] if role == "admin" else ["ui-url", "--viewer"]
    res = d.cli(*args)
    assert res.returncode == 0, res.stderr
    link = res.stdout.strip()
    assert link.startswith("http://127.0.0.1:") and "/api/signin?code=" in link, link
    return link


@pytest.fixture
def open_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``open_page(daemon, viewport=DESKTOP, role="admin", route=None)``: a new browser context signed in through
    the daemon's one-time link, on the page, ready (its cameras listed); ``route=(pattern, handler)`` is installed
    (Playwright's ``context.route``) before the page loads. Page errors fail the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_(d: DaemonProc, viewport: dict[str, int] = DESKTOP, role: str = "admin",
              route: tuple[str, Any] | None = None) -> Any:
        ctx = browser.new_context(viewport=viewport)
        contexts.append(ctx)
        if route is not None:
            ctx.route(*route)
        page = ctx.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(sign_in_link(d, role))
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        return page

    yield open_
    for ctx in contexts:
        ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: Any, tmp_path: Path, name: str, record_property: Any) -> Path:
    """A full-page PNG kept in the test's tmp dir; its path is printed and recorded in the test report."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    record_property(f"screenshot_{name}", str(path))
    return path
