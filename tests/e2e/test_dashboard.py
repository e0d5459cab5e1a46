"""The fleet dashboard (/dashboard) in Chromium against the real server: the admin token, the
panels (versions, percentiles, rollout, charts) and the release controls, checked against what
the channel API then gives devices.

Telemetry is put in the server's data folder with TelemetryStore directly, received over the
last hours, so that the hourly charts have a history to draw.
"""

from __future__ import annotations

import itertools
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import BrowserContext, Page

from waystation.device import Manifest
from waystation.server.admin_auth import AdminTokens
from waystation.server.registry import Registry, bucket
from waystation.server.telemetry_store import TelemetryStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from telemetry_reports import REFERENCE, report, telemetry_bundle

KEY = Ed25519PrivateKey.generate()
HOUR_MS = 3_600_000
REFRESH_TIMEOUT_MS = 20_000
_numbers = itertools.count()


@pytest.fixture(scope="module")
def token(server) -> str:
    return AdminTokens(server.data).make()


@pytest.fixture
def fleet(server, tmp_path: Path) -> str:
    """A fresh bundle: 1.0.0 on stable for everyone, 1.0.1 rolled out to 30%, six hours of reports from both."""
    name = f"fleet{next(_numbers)}-{uuid.uuid4().hex[:8]}"
    registry = Registry(server.data)
    registry.publish(telemetry_bundle(tmp_path, KEY, name, "1.0.0"), "stable", 100)
    registry.publish(telemetry_bundle(tmp_path, KEY, name, "1.0.1", "1.0.0"), "stable", 30)
    store, now = TelemetryStore(server.data), int(time.time() * 1000)
    for hours_ago in range(6, -1, -1):
        for version, devices, base_ms in (("1.0.0", 8, 10.0), ("1.0.1", 6 - hours_ago, 20.0)):
            for device in range(devices):
                samples = [base_ms + i % 10 for i in range(20)]
                store.ingest(report(name, version, device=f"{version}{device}".replace(".", "").ljust(32, "0"),
                                    functions={"classify": (samples, {"model-error": 1})},
                                    signals={"top_score": REFERENCE}),
                             received_ms=now - hours_ago * HOUR_MS)
    return name


def admin_detail(server, token: str, name: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/admin/bundles/{name}", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return response.json()


def served_version(server, name: str, device: str) -> str | None:
    response = httpx.get(f"{server.url}/api/bundles/{name}/channels/stable", params={"device": device})
    return Manifest.from_json(response.content).version if response.status_code == 200 else None


def open_dashboard(context: BrowserContext, server, token: str) -> Page:
    """The dashboard, given the token through its form, its first refresh done."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#token-form:not([hidden])")
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")
    page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=REFRESH_TIMEOUT_MS)
    assert not errors, errors
    return page


def test_the_page_asks_for_the_token_and_refuses_a_wrong_one(context: BrowserContext, server, token: str) -> None:
    page = context.new_page()
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#token-form:not([hidden])")
    assert page.is_hidden("#bundles")
    page.fill("#token", "not-" + token)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#token-error:not([hidden])", timeout=REFRESH_TIMEOUT_MS)
    assert "not valid" in page.text_content("#token-error")
    assert page.evaluate("sessionStorage.length") == 0
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")
    page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=REFRESH_TIMEOUT_MS)
    assert page.is_hidden("#token-form")
    assert page.evaluate("Object.values(sessionStorage)") == [token]
    assert token not in page.url
    page.reload()  # the tab keeps it: no second prompt
    page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=REFRESH_TIMEOUT_MS)
    assert page.is_hidden("#token-form")


def test_it_shows_versions_percentiles_and_rollout(context: BrowserContext, server, token: str, fleet: str) -> None:
    page = open_dashboard(context, server, token)
    section = f"[data-bundle='{fleet}']"
    page.wait_for_selector(f"{section} tr[data-version='1.0.1']")
    stats = admin_detail(server, token, fleet)["telemetry"]["summary"]["versions"]
    for version in ("1.0.0", "1.0.1"):
        row = f"{section} tr[data-version='{version}']"
        for q in ("p50", "p95", "p99"):
            assert page.text_content(f"{row} td.{q}") == f"{round(stats[version][q])} ms"
    assert stats["1.0.1"]["p95"] > stats["1.0.0"]["p95"]
    segments = page.eval_on_selector_all(f"{section} [data-channel='stable'] .seg",
                                         "els => els.map(e => [e.dataset.version, e.dataset.share])")
    assert segments == [["1.0.1", "30"], ["1.0.0", "70"]]
    assert "30% of stable" in page.text_content(f"{section} tr[data-version='1.0.1']")

    # A halt (as the halt rules make one) shows at the next refresh, with its reason.
    Registry(server.data).halt(fleet, "stable", "1.0.1", "halted: error rate 9.1% > 1% over 6 devices")
    page.wait_for_selector(f"{section} tr[data-version='1.0.1'] .badge.halted", timeout=REFRESH_TIMEOUT_MS)
    assert "halted: error rate 9.1% > 1% over 6 devices" in page.text_content(f"{section} .events li.halted")
    page.wait_for_selector(f"{section} [data-channel='stable'] .seg[data-version='1.0.0'][data-share='100']")


def test_its_charts_are_drawn(context: BrowserContext, server, token: str, fleet: str, tmp_path: Path) -> None:
    page = open_dashboard(context, server, token)
    section = f"[data-bundle='{fleet}']"
    page.wait_for_selector(f"{section} .chart canvas")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    # Pixels of each version's own colour (its swatch's), opaque: the lines and points uPlot drew.
    counts = page.evaluate("""(section) => {
      const root = document.querySelector(section);
      const colour = (version) => getComputedStyle(root.querySelector(`tr[data-version="${version}"] .swatch`))
        .backgroundColor.match(/\\d+/g).map(Number);
      return [...root.querySelectorAll(".chart canvas")].map((canvas) => {
        const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
        const count = (rgb) => {
          let n = 0;
          for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] > 200 && rgb.every((c, k) => Math.abs(data[i + k] - c) < 40)) n += 1;
          }
          return n;
        };
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted += 1;
        return { painted, old: count(colour("1.0.0")), new: count(colour("1.0.1")) };
      });
    }""", section)
    assert len(counts) == 3, counts  # adoption, p95 latency, error rate
    for chart in counts:
        assert chart["painted"] > 5_000, counts
        assert chart["old"] > 50 and chart["new"] > 50, counts


def test_its_controls_change_what_devices_get(context: BrowserContext, server, token: str, fleet: str) -> None:
    # A device outside the 30% of 1.0.1: it has 1.0.0 until the rollout reaches it.
    device = next(d for d in (f"device-{i}" for i in range(1000)) if bucket(d, fleet, "1.0.1") >= 30)
    assert served_version(server, fleet, device) == "1.0.0"
    page = open_dashboard(context, server, token)
    section = f"[data-bundle='{fleet}']"
    page.wait_for_selector(f"{section} select[name=version] option[value='1.0.1']", state="attached")

    page.select_option(f"{section} select[name=channel]", "stable")
    page.select_option(f"{section} select[name=version]", "1.0.1")
    page.fill(f"{section} input[name=percent]", "100")
    page.click(f"{section} button[name=rollout]")
    page.wait_for_selector(f"{section} .outcome:has-text('1.0.1 rolled out to 100% of stable')")
    assert served_version(server, fleet, device) == "1.0.1"
    page.wait_for_selector(f"{section} [data-channel='stable'] .seg[data-version='1.0.1'][data-share='100']")

    page.select_option(f"{section} select[name=revoke-version]", "1.0.1")
    page.fill(f"{section} input[name=reason]", "wrong labels")
    page.click(f"{section} button[name=revoke]")
    page.wait_for_selector(f"{section} .confirm:not([hidden])")
    assert served_version(server, fleet, device) == "1.0.1"  # nothing happens before the confirm step
    page.click(f"{section} button[name=confirm-revoke]")
    page.wait_for_selector(f"{section} .outcome:has-text('1.0.1 revoked')")
    assert served_version(server, fleet, device) == "1.0.0"
    page.wait_for_selector(f"{section} tr[data-version='1.0.1'] .badge.revoked")
    assert "wrong labels" in page.text_content(f"{section} .events")


def test_the_dashboard_is_served_but_never_precached(server, site_dir: Path) -> None:
    for path in ("/dashboard", "/dashboard.js", "/dashboard.css", "/vendor/uplot.js", "/vendor/uplot.css"):
        response = httpx.get(server.url + path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-cache", path
    service_worker = (site_dir / "sw.js").read_text()
    assert '"vendor/crdt.js"' in service_worker  # the list is there, with the shell's own vendored modules
    assert "dashboard." not in service_worker and "uplot" not in service_worker


def test_what_devices_send_shows_on_the_page(context: BrowserContext, server, token: str, tmp_path: Path) -> None:
    """Reports and log lines posted to the device endpoints, as a device sends them, reach the panels."""
    name = f"sent{next(_numbers)}-{uuid.uuid4().hex[:8]}"
    Registry(server.data).publish(telemetry_bundle(tmp_path, KEY, name, "3.0.0"), "stable", 100)
    headers = {"authorization": f"Bearer {token}"}
    logging = httpx.post(f"{server.url}/api/admin/bundles/{name}/channels/stable/logging", headers=headers,
                         json={"share": 100, "level": "warning"})
    assert logging.status_code == 200, logging.text
    for device in ("c" * 32, "d" * 32):
        sent = httpx.post(f"{server.url}/api/telemetry",
                          json=report(name, "3.0.0", device=device, functions={"classify": ([5.0] * 9 + [50.0], {})}))
        assert sent.status_code == 202, sent.text
    upload = {"schema": 1, "id": str(uuid.uuid4()), "bundle": name, "version": "3.0.0",
              "lines": [{"t": int(time.time() * 1000), "level": "warning", "logger": "waystation.fleet",
                         "message": "a stroke with no points"}]}
    assert httpx.post(f"{server.url}/api/logs", json=upload).status_code == 202

    page = open_dashboard(context, server, token)
    row = f"[data-bundle='{name}'] tr[data-version='3.0.0']"
    page.wait_for_selector(row)
    cells = page.eval_on_selector_all(f"{row} td.num", "tds => tds.map(td => td.textContent)")
    assert cells[:3] == ["2", "20", "0.00%"], cells  # devices, calls, error rate
    p50, unit = page.text_content(f"{row} td.p50").split()
    assert unit == "ms" and float(p50) == pytest.approx(5.0, rel=0.03)  # the log buckets' 2% accuracy
    assert "a stroke with no points" in page.text_content(f"[data-bundle='{name}'] table.logs")
    assert "remote logs from 100% at warning+" in page.text_content(f"[data-bundle='{name}'] [data-channel='stable']")
