"""examples/embed-widget: someone else's app (its own page, script and CSS, served by a plain
static file server with the headers docs/embedding.md lists) embedding <waystation-app> from
the runtime exported under /waystation/ (`waystation build --runtime-only`), in headless Chromium.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from waystation.runtime_export import keep_runtime

from .conftest import BOOT_TIMEOUT_MS
from server_process import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "embed-widget"
WIDGET = "waystation-app#digits"
# Every progress, ready and error event the page's widgets dispatch, from the first one on
# (they bubble out of their shadow roots to the document).
RECORD_EVENTS = """
window.__widgetEvents = [];
for (const type of ["progress", "ready", "error", "offlinechange"]) {
  document.addEventListener(type, (e) => window.__widgetEvents.push({
    type, id: e.target.id, detail: type === "ready" ? { version: e.detail.version } :
      type === "error" ? { name: e.detail.error.name, message: e.detail.error.message } : e.detail,
  }));
}
"""


@pytest.fixture(scope="module")
def static_folder(site_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example app's static folder: its own files, and the runtime under waystation/."""
    static = tmp_path_factory.mktemp("acme") / "static"
    shutil.copytree(EXAMPLE, static, ignore=shutil.ignore_patterns("serve.py", ".gitignore", "README.md", "waystation"))
    shutil.copytree(site_dir, static / "waystation")
    keep_runtime(ROOT, static / "waystation", progress=lambda _m: None)
    return static


@contextmanager
def example_server(static: Path, *flags: str) -> Iterator[str]:
    """The example's serve.py on a free port; yields its URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, str(EXAMPLE / "serve.py"), "--port", str(port), "--directory", str(static),
                               *flags], stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def app_url(static_folder: Path) -> Iterator[str]:
    with example_server(static_folder) as url:
        yield url


def open_app(context: BrowserContext, url: str) -> Page:
    context.add_init_script(RECORD_EVENTS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")
    page.wait_for_selector(f"{WIDGET}[state=ready], {WIDGET}[state=error]", timeout=BOOT_TIMEOUT_MS)
    assert page.get_attribute(WIDGET, "state") == "ready", page.text_content(f"{WIDGET} [part~=error]")
    assert not errors, errors
    return page


def test_runtime_export_holds_the_runtime_and_no_demo_page(app_url: str) -> None:
    for path in ("waystation/waystation.js", "waystation/widget.js", "waystation/worker.js", "waystation/sw.js",
                 "waystation/waystation.d.ts", "waystation/widget.d.ts", "waystation/boot.json",
                 "waystation/bundles/digits/latest.json", "waystation/ort/ort-wasm-simd-threaded.wasm"):
        assert httpx.get(f"{app_url}/{path}").status_code == 200, path
    for demo in ("digits.html", "notes.js", "style.css", "index.html"):
        assert httpx.get(f"{app_url}/waystation/{demo}").status_code == 404, demo
    wasm = httpx.get(f"{app_url}/waystation/ort/ort-wasm-simd-threaded.wasm")
    assert wasm.headers["content-type"] == "application/wasm"
    # The service worker precaches only what is there.
    sw = httpx.get(f"{app_url}/waystation/sw.js").text
    entries = json.loads(sw.split("const PRECACHE_ENTRIES = ", 1)[1].split(";\n", 1)[0])
    assert entries and all(httpx.head(f"{app_url}/waystation/{e['url']}").status_code == 200 for e in entries)


def test_widget_shows_progress_then_ready_and_answers_as_the_app(context: BrowserContext, app_url: str) -> None:
    page = open_app(context, app_url)
    events = page.evaluate("window.__widgetEvents.filter((e) => e.id === 'digits')")
    kinds = [e["type"] for e in events]
    assert "progress" in kinds and "ready" in kinds and kinds.index("progress") < kinds.index("ready"), kinds
    assert any(isinstance(e["detail"].get("total"), int) and e["detail"]["total"] > 0
               for e in events if e["type"] == "progress"), "no progress with bytes of a total"
    assert page.is_hidden(f"{WIDGET} [part~=progress]")
    assert "ready" in page.text_content(f"{WIDGET} [part~=status]")
    # Cross-origin isolated by the example server's headers: ort may use threads.
    assert page.evaluate("crossOriginIsolated") is True

    same = page.evaluate("""async () => {
      const el = document.getElementById("digits");
      const [sample] = await el.call("samples");
      const args = { features: [sample.pixels] };
      return { widget: await el.call("classify_features", args), app: await el.app.call("classify_features", args),
               label: sample.label };
    }""")
    assert same["widget"] == same["app"]
    assert same["widget"][0]["digit"] == same["label"]
    page.click("#classify")  # the app's own button, in the widget's default slot
    page.wait_for_selector("#answer[data-digit]")
    assert page.get_attribute("#answer", "data-digit") == str(same["label"])
    # The app's CSS restyled the widget: a custom property and a ::part() rule.
    status_color = page.evaluate("""getComputedStyle(document.getElementById("digits").shadowRoot
        .querySelector("[part~=status]")).color""")
    assert status_color == "rgb(26, 127, 55)"


def test_widget_shows_offline_when_the_context_goes_offline(context: BrowserContext, app_url: str) -> None:
    page = open_app(context, app_url)
    assert page.get_attribute(WIDGET, "offline") is None
    assert page.is_hidden(f"{WIDGET} [part~=offline]")
    context.set_offline(True)
    page.wait_for_selector(f"{WIDGET}[offline]")
    assert page.is_visible(f"{WIDGET} [part~=offline]")
    # Offline, the bundle still answers on the device.
    assert page.evaluate("document.getElementById('digits').call('samples').then((s) => s.length)") > 0
    context.set_offline(False)
    page.wait_for_function("!document.getElementById('digits').hasAttribute('offline')")
    assert page.is_hidden(f"{WIDGET} [part~=offline]")


def test_widget_shows_an_error_for_a_bundle_that_does_not_exist(context: BrowserContext, app_url: str) -> None:
    page = open_app(context, app_url)
    page.evaluate("""() => {
      const el = document.createElement("waystation-app");
      el.id = "missing";
      el.setAttribute("bundle", "no-such-bundle");
      document.querySelector("main").append(el);
    }""")
    page.wait_for_selector("waystation-app#missing[state=error]", timeout=BOOT_TIMEOUT_MS)
    name = page.text_content("waystation-app#missing [part~=error-name]")
    message = page.text_content("waystation-app#missing [part~=error-message]")
    assert name and "no-such-bundle" in message, (name, message)
    assert page.is_visible("waystation-app#missing [part~=error]")
    told = page.evaluate("window.__widgetEvents.filter((e) => e.id === 'missing' && e.type === 'error')")
    assert told == [{"type": "error", "id": "missing", "detail": {"name": name, "message": message}}]
    rejected = page.evaluate("document.getElementById('missing').ready.then(() => null, (e) => e.name)")
    assert rejected == name
    assert page.get_attribute(WIDGET, "state") == "ready"  # the other widget is untouched


def test_without_isolation_headers_the_widget_works_on_one_thread(context: BrowserContext, static_folder: Path) -> None:
    """serve.py --no-isolation: no COOP/COEP, so no SharedArrayBuffer; the bundle still opens and answers."""
    with example_server(static_folder, "--no-isolation") as url:
        assert "Cross-Origin-Embedder-Policy" not in httpx.get(url + "/").headers
        page = open_app(context, url)
        assert page.evaluate("crossOriginIsolated") is False
        page.click("#classify")
        page.wait_for_selector("#answer[data-digit]")
        label = page.evaluate("document.getElementById('digits').call('samples').then((s) => s[0].label)")
        assert page.get_attribute("#answer", "data-digit") == str(label)
