"""The app under its Content-Security-Policy, in a real browser against the real server: both
pages boot (Pyodide and onnxruntime-web WASM in module workers, the module service worker),
answer, and the browser reports no violation. The policy does hold: an inline script is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

from .conftest import BOOT_TIMEOUT_MS, wait_ready

# Violations seen by the page itself (the console carries those of its workers too).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__cspViolations.push(`${e.effectiveDirective} ${e.blockedURI}`));
"""
INLINE_SCRIPT = """() => document.head.append(Object.assign(document.createElement("script"),
  { textContent: "window.inlineScriptRan = true;" }))"""


def _use_notes(page: Page) -> None:
    if page.is_visible("#empty"):
        page.click("#examples")
        page.wait_for_function("document.querySelectorAll('#notes li').length === 5", timeout=BOOT_TIMEOUT_MS)
    page.fill("#query", "groceries to buy")
    page.click("#search")
    page.wait_for_selector("#results li", timeout=BOOT_TIMEOUT_MS)


def _use_digits(page: Page) -> None:
    page.click(".samples button >> nth=0")
    page.wait_for_function("document.querySelector('#latency').textContent.includes('on-device latency')")


@pytest.mark.parametrize(("path", "use"), [("/", _use_notes), ("/digits.html", _use_digits)])
def test_the_app_runs_under_its_content_security_policy(browser: Browser, server, path, use) -> None:
    context = browser.new_context()  # not the fixture's: this test makes a violation on purpose
    try:
        _run_under_the_policy(context, server.url + path, use)
    finally:
        context.close()


def _run_under_the_policy(context: BrowserContext, url: str, use: Callable[[Page], None]) -> None:
    console: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            console.append(message.text)

    context.add_init_script(RECORD_VIOLATIONS)
    context.on("console", watch)
    page = context.new_page()
    page.on("worker", lambda worker: worker.on("console", watch))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    response = page.goto(url)
    assert response is not None and "content-security-policy" in response.headers
    wait_ready(page)
    use(page)
    page.reload()  # now through the service worker
    wait_ready(page)
    use(page)
    assert page.evaluate("window.__cspViolations") == [] and console == [] and errors == []

    # The policy is in force and the watch sees it: an inline script is refused and reported.
    page.evaluate(INLINE_SCRIPT)
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.inlineScriptRan") is None
    assert page.evaluate("window.__cspViolations")[0].startswith("script-src")
    page.wait_for_timeout(200)
    assert any("inline script" in text for text in console), console
