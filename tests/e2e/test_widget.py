"""<waystation-app> (web/widget.js) on the real server, with the service worker: install
progress, ready, offline, errors, "update ready" after a newer release on its channel, a call
equal to app.call, and an app's restyling through ::part() and custom properties.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from waystation.server.registry import Registry

from .conftest import BOOT_TIMEOUT_MS
from .test_bundle_updates import make_v2

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


def test_update_ready_after_a_newer_release_and_the_button_updates(
    context: BrowserContext, start_server, tmp_path: Path
) -> None:
    server = start_server()  # a registry of its own: the site's digits 1.0.0 on stable
    page = open_widget(context, server.url)
    assert page.get_attribute(WIDGET, "update-ready") is None
    Registry(server.data).publish(make_v2(tmp_path), "stable")
    # Back online after a while away: the widget asks the channel again.
    context.set_offline(True)
    page.wait_for_selector(f"{WIDGET}[offline]")
    context.set_offline(False)
    page.wait_for_selector(f"{WIDGET}[update-ready]", timeout=30_000)
    (ready,) = [e["detail"] for e in events(page, "updateready")]
    assert ready["from"] == "1.0.0" and ready["to"] == "1.0.1" and ready["staged"] is False and ready["fetchBytes"] > 0
    assert "1.0.1" in page.text_content(f"{WIDGET} [part~=update-text]")
    page.click(f"{WIDGET} [part~=update-button]")
    page.wait_for_function("document.getElementById('app').version === '1.0.1' || document.getElementById('app').error",
                           timeout=BOOT_TIMEOUT_MS)
    assert page.evaluate("document.getElementById('app').version") == "1.0.1", events(page, "error")
    page.wait_for_selector(f"{WIDGET}[state=ready]:not([update-ready])")
    assert [e["detail"] for e in events(page, "updated")] == [{"to": "1.0.1"}]
    assert any(e["detail"]["stage"] == "download" for e in events(page, "progress")[-50:])
    assert page.evaluate("document.getElementById('app').call('release_notes')") == "1.0.1: calibration data"
    assert page.evaluate("document.getElementById('app').checkForUpdate()") is None


def test_a_staged_update_is_offered(context: BrowserContext, start_server, tmp_path: Path) -> None:
    """An update fetched for the next load (app.update({activate: "next-load"})) is offered too."""
    server = start_server()
    page = open_widget(context, server.url)
    Registry(server.data).publish(make_v2(tmp_path), "beta")
    staged = page.evaluate("document.getElementById('app').app.update({ channel: 'beta', activate: 'next-load' })"
                           ".then((r) => r.activated)")
    assert staged == "next-load"
    found = page.evaluate("document.getElementById('app').checkForUpdate()")
    assert found == {"from": "1.0.0", "to": "1.0.1", "staged": True}
    page.wait_for_selector(f"{WIDGET}[update-ready]")


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
