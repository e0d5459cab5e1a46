"""The device's histogram arithmetic (web/histogram.js, run by Node) against the server's
(waystation.server.histogram) on the same samples: the same buckets, quantiles, merge and PSI,
so a report means one thing on both sides."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from waystation.server import histogram

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
SCRIPT = """
import * as h from "./web/histogram.js";
const { samples, more, edges, values, reference } = JSON.parse(process.argv[1]);
const a = h.emptyLatency();
for (const v of samples) h.addLatency(a, v);
const b = h.emptyLatency();
for (const v of more) h.addLatency(b, v);
const merged = h.mergeLatency(h.mergeLatency(h.emptyLatency(), a), b);
const s = h.emptySignal(edges.length + 1);
for (const v of values) h.addSignal(s, edges, v);
console.log(JSON.stringify({
  buckets: a.b, n: a.n,
  quantiles: [0, 0.5, 0.9, 0.95, 0.99, 1].map((q) => h.quantile(a, q)),
  merged: { n: merged.n, b: merged.b, min: merged.min, max: merged.max, p95: h.quantile(merged, 0.95) },
  counts: s.counts, psi: h.psi(s.counts, reference),
}));
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_device_and_the_server_compute_the_same_histograms() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(1.5, 1.0) for _ in range(500)] + [0.0, 1e-4, 0.001, 5000.0]
    more = [rng.uniform(0.5, 80) for _ in range(200)]
    edges = [0.5, 0.7, 0.9, 0.95]
    values = [rng.random() for _ in range(300)] + edges  # each edge itself falls in the bin it opens
    reference = [3, 5, 10, 20, 40]
    arg = json.dumps({"samples": samples, "more": more, "edges": edges, "values": values, "reference": reference})
    out = subprocess.run([str(NODE), "--input-type=module", "-e", SCRIPT, arg], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    js = json.loads(out.stdout)

    py = histogram.from_samples(samples)
    assert js["buckets"] == py["b"] and js["n"] == py["n"]
    for q, got in zip([0, 0.5, 0.9, 0.95, 0.99, 1], js["quantiles"]):
        assert got == pytest.approx(histogram.quantile(py, q), rel=1e-12)
    merged = histogram.merge(py, histogram.from_samples(more))
    assert js["merged"]["b"] == merged["b"] and js["merged"]["n"] == merged["n"]
    assert (js["merged"]["min"], js["merged"]["max"]) == (merged["min"], merged["max"])
    assert js["merged"]["p95"] == pytest.approx(histogram.quantile(merged, 0.95), rel=1e-12)

    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[sum(v >= e for e in edges)] += 1
    assert js["counts"] == counts
    assert js["psi"] == histogram.psi(counts, reference)
