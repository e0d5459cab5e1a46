"""A version staged for the next load becomes active when the page next opens the bundle, and
never because something read which version is active: a GET of bundles/NAME/latest.json, from
the page or from a worker, changes nothing.

The server's "stable" channel serves the site's digits 1.0.0, "beta" serves 1.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from waystation.server.registry import Registry

from .conftest import wait_ready
from .test_bundle_updates import make_v2

# What the page reads, then what a worker reads: open({serviceWorker: false}) starts a worker
# that asks latest.json which version to open, and opens it (the service worker answers it).
READ_LATEST = """async (times) => {
  const versions = [];
  for (let i = 0; i < times; i++) {
    versions.push((await (await fetch("/bundles/digits/latest.json", { cache: "no-store" })).json()).version);
  }
  const { open } = await import("/waystation.js");
  const other = await open({ bundle: "digits", serviceWorker: false });
  const opened = other.version;
  other.close();
  return { versions, opened };
}"""


@pytest.fixture(scope="module")
def channels(tmp_path_factory: pytest.TempPathFactory, start_server) -> Iterator[Any]:
    server = start_server()  # publishes the site's digits 1.0.0 on stable
    Registry(server.data).publish(make_v2(tmp_path_factory.mktemp("next-load")), "beta")
    yield server
    server.stop()


def boot(context: BrowserContext, server: Any) -> Page:
    page = context.new_page()
    page.goto(f"{server.url}/digits.html")
    wait_ready(page)
    return page


def test_reading_latest_json_activates_nothing_and_the_next_open_activates_the_staged_version(context, channels):
    page = boot(context, channels)
    out = page.evaluate("app.update({ channel: 'beta', activate: 'next-load' })")
    assert (out["to"], out["activated"]) == ("1.0.1", "next-load"), out

    for _ in range(2):
        read = page.evaluate(READ_LATEST, 3)
        assert read == {"versions": ["1.0.0"] * 3, "opened": "1.0.0"}, read
        held = page.evaluate("app.versions()")
        assert (held["active"], held["staged"]) == ("1.0.0", "1.0.1"), held
        assert {v["version"]: v["state"] for v in held["versions"]} == {"1.0.0": "installed", "1.0.1": "ready"}
    assert page.evaluate("app.version") == "1.0.0"

    page.reload()  # the next load: digits.js opens the bundle
    wait_ready(page)
    assert page.evaluate("app.version") == "1.0.1"
    held = page.evaluate("app.versions()")
    assert (held["active"], held["previous"], held["staged"]) == ("1.0.1", "1.0.0", None), held
    assert page.evaluate(READ_LATEST, 1) == {"versions": ["1.0.1"], "opened": "1.0.1"}


def test_a_second_app_opened_on_the_page_is_the_next_load(context, channels):
    page = boot(context, channels)
    page.evaluate("app.update({ channel: 'beta', activate: 'next-load' })")
    out = page.evaluate("""async () => {
      const { open } = await import("/waystation.js");
      const other = await open({ bundle: "digits" });  // through the service worker's store
      const opened = other.version;
      other.close();
      return { opened, running: app.version };
    }""")
    assert out == {"opened": "1.0.1", "running": "1.0.0"}, out  # the app already open keeps its version
    assert page.evaluate("app.versions()")["active"] == "1.0.1"
