"""`waystation run --server URL --user NAME`: ctx.state on CPython syncs with the documents a
browser signed in as the same user syncs, through the real server (the y-websocket protocol at
/api/sync/ws), and two command-line runs on different data folders see each other's writes.
The CLI runs as a child process, as a user types it, on the site's built MiniLM bundle."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from .conftest import open_page
from .test_state_sync import PASSWORD, SYNC_TIMEOUT_MS, add_note, register, sign_in, wait_texts

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 180

# Counts the page's statechange events: edits that came from elsewhere (installed before any script runs).
COUNT_STATECHANGES = """
window.__statechanges = 0;
const add = EventTarget.prototype.addEventListener;
EventTarget.prototype.addEventListener = function (type, listener, options) {
  if (type === "statechange") add.call(this, type, () => { window.__statechanges += 1; }, options);
  return add.call(this, type, listener, options);
};
"""


@pytest.fixture(scope="module")
def minilm(site_dir: Path) -> Path:
    """The site's built MiniLM bundle (NAME/VERSION with manifest.json)."""
    [folder] = (site_dir / "bundles" / "minilm").glob("*/manifest.json")
    return folder.parent


def waystation_run(bundle: Path, function: str, data: Path, server, user: str, args: object = None,
                   password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "waystation", "run", str(bundle), function, "--data", str(data),
               "--server", server.url, "--user", user]
    if args is not None:
        command += ["--args", json.dumps(args)]
    env = {**os.environ, "WAYSTATION_PASSWORD": password}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=CLI_TIMEOUT_S)


def unsent_rows(data: Path) -> int:
    """Rows of the folder's documents the server has not acknowledged (state_sync's bookkeeping)."""
    with sqlite3.connect(data / "state.sqlite3") as db:
        return db.execute("""SELECT COUNT(*) FROM updates AS u LEFT JOIN sync_sent AS s ON s.doc = u.doc
                             WHERE u.id > COALESCE(s.upto, 0)""").fetchone()[0]


def note_texts(run: subprocess.CompletedProcess[str]) -> list[str]:
    assert run.returncode == 0, run.stderr
    return sorted(note["text"] for note in json.loads(run.stdout))


def test_the_cli_and_a_browser_of_one_user_see_each_others_notes(context: BrowserContext, server, minilm, tmp_path):
    account = register(server)
    context.add_init_script(COUNT_STATECHANGES)
    page = open_page(context, server.url + "/")
    sign_in(page, account)
    add_note(page, "Written in the browser: book the dentist")

    read = waystation_run(minilm, "notes", tmp_path / "laptop", server, account["user"])
    assert note_texts(read) == ["Written in the browser: book the dentist"]
    assert "offline" not in read.stderr

    seen_before = page.evaluate("window.__statechanges")
    added = waystation_run(minilm, "add_notes", tmp_path / "laptop", server, account["user"],
                           {"texts": ["Written on the command line: renew the passport"]})
    assert added.returncode == 0, added.stderr
    [note] = json.loads(added.stdout)
    assert note["text"] == "Written on the command line: renew the passport"

    # The run returned after the server acknowledged its note: the browser gets it as a remote edit.
    wait_texts(page, ["Written in the browser: book the dentist", "Written on the command line: renew the passport"])
    page.wait_for_function(f"window.__statechanges > {seen_before}", timeout=SYNC_TIMEOUT_MS)
    tags = page.locator("#notes li", has_text="renew the passport").locator(".tag").all_text_contents()
    assert tags == note["tags"]  # computed on CPython, shown in the page as they were stored


def test_two_cli_runs_on_different_data_folders_see_each_others_writes(server, minilm, tmp_path):
    user = register(server)["user"]
    first = waystation_run(minilm, "add_notes", tmp_path / "one", server, user, {"texts": ["From folder one"]})
    assert first.returncode == 0, first.stderr
    assert note_texts(waystation_run(minilm, "notes", tmp_path / "two", server, user)) == ["From folder one"]
    second = waystation_run(minilm, "add_notes", tmp_path / "two", server, user, {"texts": ["From folder two"]})
    assert second.returncode == 0, second.stderr
    both = ["From folder one", "From folder two"]
    assert note_texts(waystation_run(minilm, "notes", tmp_path / "one", server, user)) == both
    assert unsent_rows(tmp_path / "one") == unsent_rows(tmp_path / "two") == 0  # what came from the server included
    assert (tmp_path / "one" / "state.sqlite3").is_file()  # the local copy is kept as before, beside the sync


def test_an_offline_run_keeps_its_writes_and_the_next_run_sends_them(start_server, minilm, tmp_path):
    server = start_server()
    user = register(server)["user"]
    assert note_texts(waystation_run(minilm, "notes", tmp_path / "laptop", server, user)) == []
    server.stop()
    offline = waystation_run(minilm, "add_notes", tmp_path / "laptop", server, user, {"texts": ["Written offline"]})
    assert offline.returncode == 0, offline.stderr
    assert "offline" in offline.stderr and "sent by the next run" in offline.stderr, offline.stderr
    assert unsent_rows(tmp_path / "laptop") > 0

    server.start()  # the same address, the same data
    assert note_texts(waystation_run(minilm, "notes", tmp_path / "desktop", server, user)) == []  # not sent yet
    reconnected = waystation_run(minilm, "notes", tmp_path / "laptop", server, user)  # any run sends what is unsent
    assert note_texts(reconnected) == ["Written offline"] and "offline" not in reconnected.stderr
    assert unsent_rows(tmp_path / "laptop") == 0
    assert note_texts(waystation_run(minilm, "notes", tmp_path / "desktop", server, user)) == ["Written offline"]


def test_a_wrong_password_or_another_account_is_one_clear_error(server, minilm, tmp_path):
    ada, bob = register(server)["user"], register(server)["user"]
    wrong = waystation_run(minilm, "notes", tmp_path / "ada", server, ada, password="not the password")
    assert wrong.returncode == 1 and wrong.stderr.strip().splitlines()[-1].startswith("error: account-error: "), wrong.stderr
    assert note_texts(waystation_run(minilm, "notes", tmp_path / "ada", server, ada)) == []
    # Ada's folder holds Ada's documents: Bob is refused, not merged into them.
    other = waystation_run(minilm, "notes", tmp_path / "ada", server, bob)
    assert other.returncode == 1 and "use another --data folder" in other.stderr, other.stderr


def test_an_account_without_a_server_is_a_usage_error(minilm, tmp_path):
    command = [sys.executable, "-m", "waystation", "run", str(minilm), "notes", "--data", str(tmp_path), "--user", "ada"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT_S)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == "error: invalid-argument: --user and --token name an account on a server: give --server URL too"
    assert not (tmp_path / "state.sqlite3").exists()  # refused before anything ran
