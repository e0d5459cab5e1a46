"""Events and feature tables in the browser, end to end: the picks demo on a real server.

The device's database is SQLite in OPFS (web/device_data.js); events are added from the page
(`app.events.add`), relayed to POST /api/events/picks, and the `items` feature table comes from
GET /api/features/items as deltas. Each test has a browser context of its own (empty storage).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response

from waystation.bundles.builder import build_bundle
from waystation.bundles.signing import dev_key
from waystation.server.features_store import FeatureStore

from .conftest import CHROMIUM, CHROMIUM_ARGS, open_page

ROOT = Path(__file__).resolve().parents[2]
PICKS = ROOT / "models" / "picks"
PASSWORD = "correct horse battery"
RELAY_TIMEOUT_S = 30


def picks_items() -> list[dict[str, Any]]:
    """The demo's items with their MiniLM embeddings, computed on CPython as `make run` does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("publish_items", PICKS / "publish_items.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # In a thread of its own: sync Playwright keeps an asyncio loop running on this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(module.items_with_embeddings).result()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    return picks_items()


@pytest.fixture(scope="module")
def picks_server(start_server, items: list[dict[str, Any]]):
    """A server of its own (tests here publish feature versions), with the items published."""
    server = start_server()
    publish(server, items)
    return server


def publish(server, rows: list[dict[str, Any]], name: str = "items") -> dict[str, Any]:
    tmp = server.data / f"{name}-{secrets.token_hex(4)}.jsonl"
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    try:
        return FeatureStore(server.data).publish(name, tmp, "item_id")
    finally:
        tmp.unlink()


@pytest.fixture
def devices(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    contexts: list[BrowserContext] = []

    def new_device(init_script: str | None = None) -> BrowserContext:
        context = browser.new_context()
        if init_script:
            context.add_init_script(init_script)
        contexts.append(context)
        return context

    yield new_device
    for context in contexts:
        context.close()


def open_picks(context: BrowserContext, server) -> Page:
    page = open_page(context, server.url + "/picks.html")
    page.wait_for_selector("#items[data-renders]")
    return page


def order(page: Page) -> list[str]:
    return page.eval_on_selector_all("#items li", "els => els.map(e => e.dataset.id)")


def stored(page: Page) -> int:
    return int(page.evaluate("app.call('stored_clicks')"))


def click(page: Page, item_id: str) -> None:
    renders = int(page.get_attribute("#items", "data-renders") or 0)
    page.click(f"#items li[data-id={item_id}] button")
    page.wait_for_selector(f"#items[data-renders='{renders + 1}']")


def test_events_survive_a_reload_a_killed_tab_and_reach_other_tabs(devices, picks_server) -> None:
    context = devices()
    page = open_picks(context, picks_server)
    ids = page.evaluate("app.events.add('clicks', [{item_id: 'r01'}, {item_id: 'r02', position: 1}])")
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)
    page.reload()
    page.wait_for_selector("#items[data-renders]")
    assert stored(page) == 2

    # A second tab shares the database (the tabs take turns on it) and sees the first's events.
    other = open_picks(context, picks_server)
    other.evaluate("app.events.add('clicks', {item_id: 'r03'})")
    assert stored(page) == 3

    # The tab is closed the moment add() resolved (its worker terminated mid-flight): nothing is lost.
    page.evaluate("app.events.add('clicks', Array.from({length: 50}, (_, i) => ({item_id: 'r04', position: i})))")
    page.close()
    other.close()
    assert stored(open_picks(context, picks_server)) == 53


def test_a_schema_violation_is_refused_naming_table_and_field_and_stores_nothing(devices, picks_server) -> None:
    page = open_picks(devices(), picks_server)
    before = stored(page)
    outcome = page.evaluate("""async () => {
        const tell = (p) => p.then((ids) => ({ ok: ids.length }), (e) => ({ name: e.name, message: e.message }));
        // One burst: the bad add fails alone, the good adds around it are stored.
        const results = await Promise.all([
            tell(app.events.add("clicks", { item_id: "r01" })),
            tell(app.events.add("clicks", [{ item_id: "r02" }, { item_id: "r03", position: "third" }])),
            tell(app.events.add("clicks", { item_id: "r04", colour: "red" })),
            tell(app.events.add("clicks", { item_id: "'); DROP TABLE ev_picks_clicks; --" })),
            tell(app.events.add("nope", { item_id: "r05" })),
        ]);
        return results;
    }""")
    assert outcome[0] == {"ok": 1}
    assert outcome[1]["name"] == "data-error"
    assert "'clicks'" in outcome[1]["message"] and "field 'position'" in outcome[1]["message"], outcome[1]
    assert outcome[2]["name"] == "data-error" and "field 'colour'" in outcome[2]["message"], outcome[2]
    assert outcome[3] == {"ok": 1}  # SQL-looking text is a value like any other
    assert outcome[4]["name"] == "data-error" and "'nope'" in outcome[4]["message"], outcome[4]
    assert stored(page) == before + 2  # of the bad batch, not even its good first event


def test_retention_removes_old_rows_and_keeps_the_row_cap(devices, picks_server) -> None:
    page = open_picks(devices(), picks_server)
    eight_days_ago = time.time() - 8 * 86400
    page.evaluate("ts => app.events.add('clicks', [{item_id: 'r01', ts}, {item_id: 'r02'}])", eight_days_ago)
    assert stored(page) == 1  # the week-old click went in the same transaction
    # 5,000 rows at most (bundle.toml): the oldest go first.
    page.evaluate("app.events.add('clicks', Array.from({length: 5100}, (_, i) => ({item_id: 'r03', position: i})))")
    assert stored(page) == 5000
    kept = page.evaluate("app.call('recent_clicks')")
    assert kept == [{"item_id": "r03", "clicks": 5000}]


def register(server) -> dict[str, str]:
    user = f"user-{secrets.token_hex(4)}"
    response = httpx.post(f"{server.url}/api/sync/register", json={"user": user, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body = response.json()
    return {"user": body["user"], "token": body["token"]}


def relayed(server, user: str) -> list[tuple[str, str]]:
    """(id, stored fields as JSON) of every event the server holds for `user`."""
    with sqlite3.connect(server.data / "events.sqlite3") as db:
        return db.execute("SELECT id, data FROM events WHERE user = ? AND bundle = 'picks'", (user,)).fetchall()


def wait_relayed(server, user: str, count: int) -> list[tuple[str, str]]:
    deadline = time.monotonic() + RELAY_TIMEOUT_S
    while len(rows := relayed(server, user)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the server holds {len(rows)} of the {count} events after {RELAY_TIMEOUT_S} s")
        time.sleep(0.2)
    return rows


def test_relay_after_an_offline_period_delivers_each_relayable_event_once(devices, picks_server) -> None:
    account = register(picks_server)
    context = devices(f"localStorage.setItem('waystation-account', {json.dumps(json.dumps(account))})")
    page = open_picks(context, picks_server)
    page.evaluate("app.events.add('clicks', {item_id: 'r01', position: 0, query: 'soup'})")
    first = wait_relayed(picks_server, account["user"], 1)
    assert json.loads(first[0][1]) == {"item_id": "r01", "position": 0}  # `query` never leaves the device

    context.set_offline(True)
    page.wait_for_selector("#data[data-state=offline]")
    added = page.evaluate("""async () => {
        const ids = [];
        for (let round = 0; round < 3; round++) {   // several bursts while offline, one of 700 (two batches)
            const size = round === 1 ? 700 : 20;
            const events = Array.from({length: size}, (_, i) => ({item_id: "r02", position: i, query: "secret"}));
            ids.push(...await app.events.add("clicks", events));
        }
        return ids;
    }""")
    assert len(added) == 740
    time.sleep(1)
    assert len(relayed(picks_server, account["user"])) == 1  # nothing left while offline

    # Back online after a reload: relay resumes from the position kept in the device's database.
    page.reload()
    page.wait_for_selector("#items[data-renders]")
    context.set_offline(False)
    page.evaluate("dispatchEvent(new Event('online'))")  # the page learns it at once, as on a real network change
    rows = wait_relayed(picks_server, account["user"], 741)
    time.sleep(1)
    rows = relayed(picks_server, account["user"])
    ids = [event_id for event_id, _ in rows]
    assert len(ids) == len(set(ids)) == 741  # each exactly once
    assert set(added) <= set(ids)
    assert all(set(json.loads(data)) == {"item_id", "position"} for _, data in rows)
    status = page.evaluate("app.events.status()")["relay"]
    assert status["state"] == "idle" and status["error"] is None, status


def test_an_event_the_server_refuses_for_good_is_skipped_and_counted_while_the_rest_is_relayed_once(
        devices, start_server, items, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real refusal: this server takes at most 4,000 bytes of events a request (413 past it), so
    # the batch of 30 is refused whole, split in halves down to the one 6,000-byte event.
    monkeypatch.setenv("WAYSTATION_MAX_RELAY_BYTES", "4000")
    server = start_server()
    publish(server, items)
    account = register(server)
    context = devices(f"localStorage.setItem('waystation-account', {json.dumps(json.dumps(account))})")
    page = open_picks(context, server)
    added = page.evaluate("""app.events.add('clicks', Array.from({length: 30}, (_, i) =>
        ({item_id: i === 11 ? 'x'.repeat(6000) : 'r01', position: i})))""")
    big = added[11]
    rows = wait_relayed(server, account["user"], 29)
    deadline = time.monotonic() + RELAY_TIMEOUT_S
    while (status := page.evaluate("app.events.status()")["relay"])["state"] != "idle" or not status["skipped"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["skipped"] == 1, status
    assert status["lastRefusal"]["status"] == 413 and status["lastRefusal"]["id"] == big, status
    assert "larger than 4000 bytes" in status["lastRefusal"]["error"] and status["lastRefusal"]["table"] == "clicks", status
    assert status["sent"] == 29 and status["error"] is None, status

    # Relay goes on past it, and the skipped event stays on the device.
    page.evaluate("app.events.add('clicks', Array.from({length: 5}, (_, i) => ({item_id: 'r02', position: i})))")
    rows = wait_relayed(server, account["user"], 34)
    time.sleep(1)
    rows = relayed(server, account["user"])
    ids = [event_id for event_id, _ in rows]
    assert len(ids) == len(set(ids)) == 34 and big not in ids  # each once, all but the refused one
    assert set(added) - {big} <= set(ids)
    assert stored(page) == 35
    assert page.evaluate("app.events.status()")["relay"]["skipped"] == 1


def test_events_added_without_an_account_move_into_it_at_its_first_sign_in_and_are_relayed(devices, picks_server) -> None:
    context = devices()
    page = open_picks(context, picks_server)
    added = page.evaluate("app.events.add('clicks', "
                          "Array.from({length: 12}, (_, i) => ({item_id: 'r03', position: i, query: 'q'})))")
    assert page.get_attribute("#data", "data-state") == "signed-out"
    account = register(picks_server)
    page.evaluate("a => app.connect(a)", account)
    rows = wait_relayed(picks_server, account["user"], 12)
    time.sleep(1)
    rows = relayed(picks_server, account["user"])
    assert sorted(event_id for event_id, _ in rows) == sorted(added)  # each once, under the account
    assert stored(page) == 12  # read through the account's database

    # They left the device's own database: without an account, none are there; back in, all are.
    page.evaluate("app.disconnect({revoke: false})")
    assert stored(page) == 0
    page.evaluate("a => app.connect(a)", account)
    assert stored(page) == 12
    assert len(relayed(picks_server, account["user"])) == 12


def test_a_feature_update_reaches_an_open_page_as_a_delta_and_works_offline(devices, start_server, items) -> None:
    server = start_server()
    publish(server, items)
    context = devices()
    bodies: list[dict[str, Any]] = []

    def seen(response: Response) -> None:
        # The service worker's fetch and the worker's are both reported; only one of them has the body.
        if "/api/features/items" in response.url and response.ok:
            with contextlib.suppress(Exception):  # the body-less report raises
                bodies.append(response.json())

    context.on("response", seen)
    page = open_picks(context, server)
    assert bodies and all(b["full"] and len(b["rows"]) == len(items) for b in bodies)

    changed = [dict(item) for item in items]
    changed[0]["title"] = "Tomato and basil soup, roasted"
    changed[7]["title"] = "Blueberry pancakes, lemon ricotta"
    result = publish(server, changed)
    assert result["changed"] == 2
    renders = int(page.get_attribute("#items", "data-renders") or 0)
    status = page.evaluate("app.events.syncFeatures()")["features"]["items"]
    assert status["version"] == result["version"] and status["changed"] == 2 and status["full"] == 0, status
    # Playwright reports the response (and reads its body) on its own time, maybe after evaluate() returned.
    for _ in range(50):
        if deltas := [b for b in bodies if b["since"] is not None]:
            break
        page.wait_for_timeout(100)
    assert deltas and all(not b["full"] and len(b["rows"]) == 2 for b in deltas), deltas  # only the 2 rows travelled
    assert status["bytes"] < len(json.dumps(bodies[0])) / 10
    page.wait_for_selector(f"#items[data-renders='{renders + 1}']")  # the page re-rendered from the "data" event
    assert page.text_content("#items li[data-id=r01]") == "Tomato and basil soup, roasted"

    context.set_offline(True)
    page.reload()
    page.wait_for_selector("#items[data-renders]")
    assert page.get_attribute("#status", "data-state") == "offline"
    assert page.text_content("#items li[data-id=r08]") == "Blueberry pancakes, lemon ricotta"


def test_a_stale_feature_table_is_reported_with_its_age(devices, picks_server, site_dir: Path, tmp_path: Path) -> None:
    # A variant of the picks bundle whose items may be 2 seconds old, served beside the site's.
    source = shutil.copytree(ROOT / "models" / "picks", tmp_path / "source", ignore=shutil.ignore_patterns("__pycache__"))
    name = f"stale{secrets.token_hex(3)}"
    config = (source / "bundle.toml").read_text().replace('name = "picks"', f'name = "{name}"')
    (source / "bundle.toml").write_text(config.replace('max_age = "1d"', 'max_age = "2s"'))
    # Signed with the key the built site trusts: the worker checks every manifest's signature.
    build_bundle(source, site_dir / "bundles", progress=lambda _m: None, key=dev_key())
    page = open_picks(devices(), picks_server)
    outcome = page.evaluate("""async (name) => {
        const { open } = await import("/waystation.js");
        const app = await open({ bundle: name, serviceWorker: false });
        const fresh = (await app.call("catalog")).length;
        await new Promise((resolve) => setTimeout(resolve, 3000));
        const age = await app.call("items_age");
        const stale = await app.call("catalog").then(() => null, (e) => ({ name: e.name, message: e.message }));
        app.close();
        return { fresh, age, stale };
    }""", name)
    assert outcome["fresh"] == 40
    assert outcome["age"] >= 3
    assert outcome["stale"]["name"] == "stale-features", outcome
    assert re.search(r"feature table 'items' is [3-9]s old, older than its max_age 2s", outcome["stale"]["message"]), outcome


def cpython_order(items: list[dict[str, Any]], clicked: list[str]) -> list[str]:
    """Items by the dot product of their embedding with the mean of the clicked ones', in plain Python."""
    vectors = {item["item_id"]: item["embedding"] for item in items}
    user = [sum(vectors[c][j] for c in clicked) / len(clicked) for j in range(len(vectors[clicked[0]]))]
    scores = {k: sum(a * b for a, b in zip(user, v)) for k, v in vectors.items()}
    return sorted(vectors, key=lambda k: -scores[k])


def test_the_demo_reorders_by_recent_clicks_online_and_offline(devices, picks_server, items) -> None:
    context = devices()
    page = open_picks(context, picks_server)
    assert order(page) == [item["item_id"] for item in items]  # no clicks yet: published order
    titles = {item["item_id"]: item["title"] for item in items}

    click(page, "r07")  # Chocolate chip cookies
    top = order(page)[:4]
    assert top[0] == "r07"
    assert {"r22", "r26", "r33", "r36"} & set(top[1:]), [titles[i] for i in top]  # other desserts rise with it
    assert top == cpython_order(items, ["r07"])[:4]  # the device's SQLite + ONNX answer is CPython's arithmetic

    context.set_offline(True)
    page.wait_for_selector("#status[data-state=offline]")
    for _ in range(3):
        click(page, "r02")  # Creamy mushroom risotto, now the majority of the window
    top = order(page)[:3]
    assert top[0] == "r02", [titles[i] for i in top]
    assert top == cpython_order(items, ["r07", "r02", "r02", "r02"])[:3]
    page.reload()
    page.wait_for_selector("#items[data-renders]")
    assert order(page)[0] == "r02"


def kill_renderers(browser: Browser) -> None:
    """SIGKILL every renderer of `browser` (its pages and their workers die mid-instruction)."""
    session = browser.new_browser_cdp_session()
    info = session.send("SystemInfo.getProcessInfo")
    session.detach()
    pids = [p["id"] for p in info["processInfo"] if p["type"] == "renderer"]
    assert pids, info
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(1)  # until the browser has noticed: a page opened sooner may land in a dying process


def test_a_killed_renderer_loses_no_event_whose_add_resolved_and_never_half_a_batch(browser: Browser, picks_server) -> None:
    own = browser.browser_type.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)  # its renderers are ours to kill
    try:
        context = own.new_context()
        page = open_picks(context, picks_server)
        page.evaluate("app.events.add('clicks', Array.from({length: 50}, (_, i) => ({item_id: 'r01', position: i})))")
        kill_renderers(own)  # right after add() resolved
        page = open_picks(context, picks_server)
        assert stored(page) == 50

        # Killed while a batch of 4,000 is being stored and written: all of it or none survives.
        page.evaluate("""() => { void app.events.add('clicks',
                                                Array.from({length: 4000}, (_, i) => ({item_id: 'r02', position: i})));
                               return new Promise((resolve) => setTimeout(resolve, 150)); }""")
        kill_renderers(own)
        page = open_picks(context, picks_server)
        assert stored(page) in (50, 4050)
        page.evaluate("app.events.add('clicks', {item_id: 'r03'})")  # the database is whole: it takes more
        assert stored(page) in (51, 4051)
    finally:
        own.close()
