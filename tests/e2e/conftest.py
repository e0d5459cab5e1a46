"""Playwright in Debian's headless Chromium against the real server on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BOOT_TIMEOUT_MS = 90_000


# Package scope: sync Playwright keeps an asyncio loop running on this thread until it stops,
# which would break asyncio.run() in the CPython tests that follow.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    yield context
    context.close()


def open_page(context: BrowserContext, url: str) -> Page:
    """A page loaded and ready (Python booted, bundle open), with no uncaught error."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    wait_ready(page)
    assert not errors, errors
    return page


@pytest.fixture
def digits_page(context: BrowserContext, server) -> Page:
    return open_page(context, server.url + "/digits.html")


@pytest.fixture
def notes_page(context: BrowserContext, server) -> Page:
    return open_page(context, server.url + "/")


def wait_ready(page: Page) -> None:
    page.wait_for_selector("#status[data-state=ready], #status[data-state=offline], #status[data-state=error]",
                           timeout=BOOT_TIMEOUT_MS)
    state = page.get_attribute("#status", "data-state")
    assert state in ("ready", "offline"), page.text_content("#status")
