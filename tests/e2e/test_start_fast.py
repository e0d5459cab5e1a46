"""Start-up and per-call paths in a real browser: Python from the build's memory snapshot (and a
plain boot when it cannot be used), typed arrays into tensor parameters, a worker started early."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

# Open digits without a service worker, call `probabilities`, and say how Python started.
OPEN_AND_CALL = """async (features) => {
  const { open } = await import("/waystation.js");
  const app = await open({ bundle: "digits", serviceWorker: false });
  try {
    const out = await app.call("probabilities", { features });
    return { timings: app.info.timings, shape: out.shape, data: Array.from(out.data) };
  } finally {
    app.close();
  }
}"""

FEATURES = [[(i * 7 + j) % 17 for j in range(64)] for i in range(3)]


def page_on(context: BrowserContext, url: str) -> Page:
    """A page of the site that no service worker controls (none was registered for it)."""
    page = context.new_page()
    page.goto(f"{url}/boot.json")
    return page


@pytest.fixture(scope="module")
def snapshot_sites(site_dir: Path, tmp_path_factory: pytest.TempPathFactory, start_server) -> Iterator[dict[str, str]]:
    """Two copies of the built site (hard links; changed files are written anew): one whose
    snapshot file is damaged, one whose boot.json names none."""
    boot = json.loads((site_dir / "boot.json").read_text())
    assert boot["snapshot"], "the build made no Pyodide snapshot"
    damaged = tmp_path_factory.mktemp("damaged") / "dist"
    shutil.copytree(site_dir, damaged, copy_function=os.link)
    (damaged / boot["snapshot"]).unlink()
    (damaged / boot["snapshot"]).write_bytes(b"\x1f\x8b not a snapshot at all" * 100)
    plain = tmp_path_factory.mktemp("plain") / "dist"
    shutil.copytree(site_dir, plain, copy_function=os.link)
    (plain / "boot.json").unlink()
    (plain / "boot.json").write_text(json.dumps({**boot, "snapshot": None}))
    yield {"damaged": start_server(damaged).url, "plain": start_server(plain).url}


def test_python_starts_from_the_snapshot_and_answers(context, server):
    out = page_on(context, server.url).evaluate(OPEN_AND_CALL, FEATURES)
    assert out["timings"]["snapshot"] is True, out["timings"]
    assert "snapshotError" not in out["timings"]
    assert out["shape"] == [3, 10]


def test_a_damaged_snapshot_falls_back_to_a_plain_boot_with_the_same_answers(context, server, snapshot_sites):
    good = page_on(context, server.url).evaluate(OPEN_AND_CALL, FEATURES)
    out = page_on(context, snapshot_sites["damaged"]).evaluate(OPEN_AND_CALL, FEATURES)
    assert out["timings"]["snapshot"] is False
    assert out["timings"]["snapshotError"], out["timings"]
    assert out["data"] == good["data"]


def test_a_site_without_a_snapshot_boots_plainly_with_the_same_answers(context, server, snapshot_sites):
    good = page_on(context, server.url).evaluate(OPEN_AND_CALL, FEATURES)
    out = page_on(context, snapshot_sites["plain"]).evaluate(OPEN_AND_CALL, FEATURES)
    assert out["timings"]["snapshot"] is False and "snapshotError" not in out["timings"]
    assert out["data"] == good["data"]


def test_typed_arrays_and_nested_lists_reach_a_tensor_parameter_alike(context, server):
    out = page_on(context, server.url).evaluate("""async (features) => {
      const { open } = await import("/waystation.js");
      const app = await open({ bundle: "digits", serviceWorker: false });
      const flat = new Float32Array(features.flat());
      const shape = [features.length, 64];
      const answers = {
        nested: await app.call("probabilities", { features }),
        tensor: await app.call("probabilities", { features: { dtype: "float32", shape, data: flat } }),
        float64: await app.call("probabilities", { features: { dtype: "float64", shape, data: Float64Array.from(flat) } }),
        positional: await app.call("probabilities", [{ dtype: "float32", shape, data: flat }]),
      };
      let refused = null;
      try {
        await app.call("probabilities", { features: { dtype: "float32", shape: [features.length, 3], data: flat } });
      } catch (e) {
        refused = { name: e.name, message: e.message };
      }
      app.close();
      return { refused, tensorParams: app.info.tensorParams,
               answers: Object.fromEntries(Object.entries(answers).map(([k, v]) => [k, Array.from(v.data)])) };
    }""", FEATURES)
    assert out["tensorParams"]["probabilities"] == {"features": "float32"}
    answers = out["answers"]
    assert answers["tensor"] == answers["nested"] == answers["float64"] == answers["positional"]
    assert len(answers["nested"]) == 30
    assert out["refused"] is not None and "shape" in out["refused"]["message"], out


def test_preload_starts_the_worker_that_open_then_uses(context, server):
    out = page_on(context, server.url).evaluate("""async () => {
      let workers = 0;
      const Original = Worker;
      window.Worker = class extends Original {
        constructor(...args) { super(...args); workers++; }
      };
      const { open, preload } = await import("/waystation.js");
      preload({ serviceWorker: false });
      preload({ serviceWorker: false }); // idempotent
      const app = await open({ bundle: "digits", serviceWorker: false });
      const answer = await app.call("samples");
      app.close();
      return { workers, samples: answer.length };
    }""")
    assert out == {"workers": 1, "samples": 20}
