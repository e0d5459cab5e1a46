"""Playwright in Debian's headless Chromium against the real server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, JSHandle, Page, TimeoutError, sync_playwright

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


def _wait_for_function(page: Page, expression: str, *, arg: Any = None, timeout: float | None = None,
                       polling: Any = None) -> JSHandle:
    """Page.wait_for_function without eval() in the page.

    Playwright's own evaluates the predicate with eval() inside the page, which the app's
    Content-Security-Policy forbids (it has no 'unsafe-eval'); page.evaluate goes through
    DevTools, outside the page's policy. Polls every 100 ms; raises Playwright's TimeoutError.
    """
    deadline = None if timeout == 0 else time.monotonic() + (timeout or 30_000) / 1000
    while not page.evaluate(expression, arg):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"wait_for_function: {timeout or 30_000} ms exceeded waiting for {expression}")
        page.wait_for_timeout(100)
    return page.evaluate_handle(expression, arg)


Page.wait_for_function = _wait_for_function  # type: ignore[method-assign, assignment]


# Package scope: sync Playwright keeps an asyncio loop running on this thread until it stops,
# which would break asyncio.run() in the CPython tests that follow.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def csp_checked(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh context of `browser`; a Content-Security-Policy violation it reports fails the test."""
    context = browser.new_context()
    violations: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    context.on("console", watch)
    yield context
    context.close()
    assert not violations, violations


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context; the test fails if the browser reports a Content-Security-Policy violation."""
    with csp_checked(browser) as context:
        yield context


@pytest.fixture
def chunk_requests(context: BrowserContext) -> list[str]:
    """The chunk addresses the browser requests (the service worker's requests included), in order."""
    seen: list[str] = []
    context.on("request", lambda r: seen.append(r.url.rsplit("/", 1)[1]) if "/chunks/" in r.url else None)
    return seen


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
