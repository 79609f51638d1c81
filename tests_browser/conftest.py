"""Real-browser checks of the admin: Debian's Chromium, headless, driven by Playwright against
the app served by pytest-django's live server (its own thread, the test database).

Run by ``make test-browser`` (which installs Chromium when it is missing); screenshots at
1366x768 go to ``screenshots/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make beside
# it are ordinary blocking calls, which Django would otherwise refuse as "async unsafe".
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent.parent / "screenshots"
VIEWPORT = {"width": 1366, "height": 768}
PASSWORD = "operator-pw-1"  # noqa: S105 (a throwaway user of the test database)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser-deps` (or set CHROMIUM)")
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # This machine's network is closed: Chromium's own background traffic only fails.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


class Screen:
    """A page at 1366x768 that records JavaScript errors and failed requests, and saves
    full-page screenshots by name."""

    def __init__(self, page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"javascript: {exc}"))
        page.on(
            "response",
            lambda r: self.errors.append(f"HTTP {r.status} {r.url}") if r.status >= 500 else None,
        )
        page.on("requestfailed", self._request_failed)

    def _request_failed(self, request) -> None:
        # An image still loading when the test moves to the next page is aborted, not broken.
        if request.failure != "net::ERR_ABORTED":
            self.errors.append(f"request failed: {request.url} ({request.failure})")

    def go(self, path: str) -> None:
        response = self.page.goto(self.base_url + path)
        assert response is not None and response.status == 200, (path, response and response.status)

    def shot(self, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def fits_the_width(self) -> bool:
        """No horizontal scrolling at 1366 px, of the page or of a list's table (the admin
        scrolls a wide list inside its box, hiding its last columns)."""
        return self.page.evaluate(
            "document.documentElement.scrollWidth <= window.innerWidth && "
            "[...document.querySelectorAll('.results')]"
            ".every(box => box.scrollWidth <= box.clientWidth)"
        )

    def too_wide(self) -> list[str]:
        """What sticks out past the window's right edge (to say why a page does not fit)."""
        return self.page.evaluate(
            "[`page ${document.documentElement.scrollWidth} > ${window.innerWidth}`]"
            ".concat([...document.querySelectorAll('.results')].filter(b => b.scrollWidth > "
            "b.clientWidth).map(b => `list ${b.scrollWidth} > ${b.clientWidth}`))"
            ".concat([...document.querySelectorAll('body *')].filter(e => "
            "e.getBoundingClientRect().right > window.innerWidth + 1).slice(-5).map(e => "
            "e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)))"
        )

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.go("/admin/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("input[type=submit]")
        self.page.wait_for_url("**/admin/")


@pytest.fixture
def screen(browser, live_server) -> Iterator[Screen]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    screen = Screen(context.new_page(), live_server.url)
    yield screen
    context.close()
    assert not screen.errors, screen.errors


@pytest.fixture
def operator(transactional_db):
    from django.contrib.auth.models import User

    return User.objects.create_superuser("operator", "op@example.com", PASSWORD)
