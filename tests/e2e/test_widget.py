"""<waystation-app> (web/widget.js) on the real server, with the service worker: install
progress, ready, offline, errors, a call equal to app.call, and an app's restyling through
::part(), custom properties and slots.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page

from .conftest import BOOT_TIMEOUT_MS

WIDGET = "waystation-app#app"
RECORD_EVENTS = """
window.__widgetEvents = [];
for (const type of ["progress", "ready", "error", "updateready", "updated", "offlinechange", "sync"]) {
  document.addEventListener(type, (e) => window.__widgetEvents.push({
    type, id: e.target.id,
    detail: type === "ready" ? { version: e.detail.version } :
      type === "error" ? { name: e.detail.error.name, message: e.detail.error.message, during: e.detail.during } :
      type === "updated" ? { to: e.detail.to } : e.detail,
  }));
}
"""


def open_widget(context: BrowserContext, url: str) -> Page:
    context.add_init_script(RECORD_EVENTS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/widget.html")
    page.wait_for_selector(f"{WIDGET}[state=ready], {WIDGET}[state=error]", timeout=BOOT_TIMEOUT_MS)
    assert page.get_attribute(WIDGET, "state") == "ready", page.text_content(f"{WIDGET} [part~=error]")
    assert not errors, errors
    return page


def events(page: Page, type_: str) -> list[dict]:
    return page.evaluate("(t) => window.__widgetEvents.filter((e) => e.type === t && e.id === 'app')", type_)


def test_install_progress_then_ready_under_the_service_worker(context: BrowserContext, server) -> None:
    page = open_widget(context, server.url)
    downloads = [e["detail"] for e in events(page, "progress") if e["detail"]["stage"] == "download"]
    assert downloads, "the first install reported no download progress"
    assert all(0 <= d["loaded"] <= d["total"] for d in downloads)
    assert downloads[-1]["loaded"] == downloads[-1]["total"] > 0
    assert events(page, "ready") == [{"type": "ready", "id": "app", "detail": {"version": "1.0.0"}}]
    assert page.evaluate("document.getElementById('app').app === document.getElementById('app').app && "
                         "navigator.serviceWorker.controller !== null")
    assert page.is_hidden(f"{WIDGET} [part~=progress]")
    assert page.text_content(f"{WIDGET} [part~=status]") == "digits 1.0.0 ready"


def test_a_call_through_the_widget_equals_app_call(context: BrowserContext, server) -> None:
    page = open_widget(context, server.url)
    same = page.evaluate("""async () => {
      const el = document.getElementById("app");
      const samples = await el.call("samples");
      const args = { features: samples.slice(0, 5).map((s) => s.pixels) };
      return { widget: await el.call("classify_features", args), app: await el.app.call("classify_features", args),
               labels: samples.slice(0, 5).map((s) => s.label) };
    }""")
    assert same["widget"] == same["app"]
    assert [a["digit"] for a in same["widget"]] == same["labels"]
    failed = page.evaluate("""document.getElementById("app").call("classify_features", { features: [[1, 2]] })
      .then(() => null, (e) => ({ name: e.name, message: e.message }))""")
    expected = page.evaluate("""document.getElementById("app").app.call("classify_features", { features: [[1, 2]] })
      .then(() => null, (e) => ({ name: e.name, message: e.message }))""")
    assert failed == expected and failed is not None


def test_offline_is_shown_and_cleared(context: BrowserContext, server) -> None:
    page = open_widget(context, server.url)
    context.set_offline(True)
    page.wait_for_selector(f"{WIDGET}[offline]")
    assert page.is_visible(f"{WIDGET} [part~=offline]")
    assert page.evaluate("document.getElementById('app').offline") is True
    context.set_offline(False)
    page.wait_for_function("!document.getElementById('app').hasAttribute('offline')")
    assert [e["detail"]["offline"] for e in events(page, "offlinechange")] == [True, False]


def test_a_missing_bundle_shows_its_error(context: BrowserContext, server) -> None:
    page = open_widget(context, server.url)
    page.evaluate("document.getElementById('app').bundle = 'no-such-bundle'")  # an attribute change reopens
    page.wait_for_selector(f"{WIDGET}[state=error]", timeout=BOOT_TIMEOUT_MS)
    (told,) = [e["detail"] for e in events(page, "error")]
    assert told["during"] == "open" and told["name"] == "not-found" and "no-such-bundle" in told["message"]
    assert page.text_content(f"{WIDGET} [part~=error-name]") == told["name"]
    assert page.text_content(f"{WIDGET} [part~=error-message]") == told["message"]
    assert page.evaluate("document.getElementById('app').app") is None
    page.evaluate("document.getElementById('app').bundle = 'digits'")  # and back: it opens again
    page.wait_for_selector(f"{WIDGET}[state=ready]", timeout=BOOT_TIMEOUT_MS)
    assert page.is_hidden(f"{WIDGET} [part~=error]")


@pytest.mark.parametrize("rule, part, prop, expected", [
    ("waystation-app::part(status) { color: rgb(1, 2, 3); }", "status", "color", "rgb(1, 2, 3)"),
    ("waystation-app { --waystation-accent: rgb(4, 5, 6); }", "update-button", "background-color", "rgb(4, 5, 6)"),
    ("waystation-app::part(panel) { border-radius: 17px; }", "panel", "border-top-left-radius", "17px"),
])
def test_an_app_restyles_the_widget(context: BrowserContext, server, rule: str, part: str, prop: str, expected: str) -> None:
    page = open_widget(context, server.url)
    style = """([part, prop]) => getComputedStyle(document.getElementById("app").shadowRoot
      .querySelector(`[part~="${part}"]`)).getPropertyValue(prop)"""
    before = page.evaluate(style, [part, prop])
    assert before != expected
    # A constructed sheet: the server's CSP (style-src 'self') refuses an inline <style>.
    page.evaluate("""(rule) => {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(rule);
      document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    }""", rule)
    assert page.evaluate(style, [part, prop]) == expected


def test_slots_replace_the_default_look(context: BrowserContext, server) -> None:
    page = open_widget(context, server.url)
    page.evaluate("""() => {
      const mine = document.createElement("strong");
      mine.slot = "status";
      mine.id = "my-status";
      mine.textContent = "my own status";
      document.getElementById("app").append(mine);
    }""")
    assert page.is_visible("#my-status")
    assert page.is_hidden(f"{WIDGET} [part~=status]")
