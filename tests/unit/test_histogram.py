"""The telemetry histograms: quantiles within 2% of numpy's over the samples, merging, PSI."""

import json
import math
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from waystation.server.histogram import GAMMA, empty, from_samples, index, merge, psi, quantile, value

ROOT = Path(__file__).resolve().parents[2]


def close(got, want, rel=0.02):
    return abs(got - want) <= rel * abs(want)


def test_bucket_rule_pinned():
    assert GAMMA == 1.04
    assert index(1.0) == 0
    assert index(1.04) == 1
    assert index(1.05) == 2
    assert index(0.0) == index(1e-3) == math.ceil(math.log(1e-3) / math.log(1.04)) == -176
    assert value(0) == pytest.approx(2 / 2.04)
    # A bucket's representative value is within 2% of everything the bucket holds.
    for i in (-100, -3, 0, 7, 150):
        low, high = GAMMA ** (i - 1), GAMMA ** i
        assert close(value(i), low) and close(value(i), high)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_match_numpy_within_2_percent(seed):
    rng = random.Random(seed)
    samples = [rng.lognormvariate(3, 0.8) for _ in range(5000)] + [rng.uniform(0.01, 2) for _ in range(500)]
    h = from_samples(samples)
    assert h["n"] == len(samples) and h["min"] == min(samples) and h["max"] == max(samples)
    for q in (0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0):
        want = float(np.quantile(samples, q, method="lower"))
        assert close(quantile(h, q), want), (q, quantile(h, q), want)


def test_merged_reports_give_the_quantiles_of_all_samples():
    rng = random.Random(7)
    parts = [[rng.expovariate(1 / (5 + k)) + 1 for _ in range(rng.randint(1, 300))] for k in range(40)]
    merged = empty()
    for part in parts:
        merged = merge(merged, from_samples(part))
    everything = [v for part in parts for v in part]
    assert merged["n"] == len(everything)
    assert merged["sum"] == pytest.approx(sum(everything))
    assert merged["min"] == min(everything) and merged["max"] == max(everything)
    assert merged == merge(from_samples(everything), empty()) | {"sum": merged["sum"]}
    for q in (0.5, 0.95, 0.99):
        assert close(quantile(merged, q), float(np.quantile(everything, q, method="lower")))


def test_quantile_is_clamped_to_the_samples_and_none_when_empty():
    assert quantile(empty(), 0.5) is None
    h = from_samples([10.0])
    assert quantile(h, 0.0) == quantile(h, 0.99) == 10.0


def test_psi_formula():
    assert psi([10, 20, 30], [1, 2, 3]) == 0.0
    a, r = [50, 30, 20, 0], [25, 25, 25, 25]
    pa = [max(x / 100, 1e-4) for x in a]
    pr = [0.25] * 4
    want = sum((x - y) * math.log(x / y) for x, y in zip(pa, pr))
    assert psi(a, r) == round(want, 4)
    assert psi(a, r) > 0.2  # a real shift
    assert psi([0, 0], [1, 1]) is None
    with pytest.raises(ValueError, match="bins"):
        psi([1, 2], [1, 2, 3])


PARITY_JS = """
import { addLatency, emptyLatency, latencyJson, mergeLatency, psi, quantile } from "./web/histogram.js";
const samples = JSON.parse(process.argv[1]);
const hists = samples.map((part) => { const h = emptyLatency(); for (const v of part) addLatency(h, v); return h; });
const merged = emptyLatency();
for (const h of hists) mergeLatency(merged, h);
console.log(JSON.stringify({ hists: hists.map(latencyJson), merged: latencyJson(merged),
  q: [0.5, 0.95, 0.99].map((q) => quantile(merged, q)), psi: psi([50, 30, 20, 0], [25, 25, 25, 25]) }));
"""


def test_the_device_computes_the_same_histograms_as_the_server():
    """web/histogram.js (what the page sends) against this module, on the same samples."""
    rng = random.Random(9)
    parts = [[round(rng.lognormvariate(2, 1.2), 3) for _ in range(rng.randint(1, 200))] for _ in range(12)]
    out = subprocess.run(["node", "--input-type=module", "-e", PARITY_JS, json.dumps(parts)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    js = json.loads(out)
    merged = empty()
    for part, sent in zip(parts, js["hists"]):
        mine = from_samples(part)
        assert sent["n"] == mine["n"] and sent["b"] == mine["b"]
        assert sent["min"] == mine["min"] and sent["max"] == mine["max"]
        merged = merge(merged, sent)
    assert merged["b"] == js["merged"]["b"]
    assert [quantile(merged, q) for q in (0.5, 0.95, 0.99)] == pytest.approx(js["q"], rel=1e-12)
    assert psi([50, 30, 20, 0], [25, 25, 25, 25]) == js["psi"]
