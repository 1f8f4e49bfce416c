"""Browser fixtures: ``browser_page`` (Playwright sync API on Debian's chromium) and ``login``.

    @pytest.mark.browser
    def test_x(browser_page, mesh):
        login(browser_page, mesh.url("admin"), mesh.password)
        screenshot(browser_page, "home")    # -> artifacts/screenshots/home.png
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1366, "height": 900}


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[object]:
    from playwright import sync_api

    executable = chromium_path()
    assert executable is not None, "chromium is not installed (ci/install-deps.sh installs it)"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium_browser) -> Iterator[object]:
    """A fresh page (its own cookies) in a 1366x900 window; closed after the test."""
    context = chromium_browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def login(page, base_url: str, password: str, next_path: str = "/") -> None:
    """Log in through the login form at ``base_url`` and wait for the page behind it."""
    from urllib.parse import quote

    page.goto(f"{base_url.rstrip('/')}/_auth/login?next={quote(next_path)}")
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    if "/_auth/login" in page.url:
        raise AssertionError(f"login failed at {base_url}: {page.text_content('body')[:300]}")


def screenshot(page, name: str, full_page: bool = True) -> Path:
    """Save ``artifacts/screenshots/<name>.png`` and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
