"""bundle.toml's [telemetry]: a bad declaration stops `waystation bundle build` with the exact
error (file, line, key); a good one reaches manifest.json with decimal strings for fractions,
and the manifest parser refuses a malformed field. The tiny bundle of tiny_bundle.py, in tmp_path.
"""

import json
from pathlib import Path

import pytest
from tiny_bundle import error_line, waystation, write_source

from waystation.bundles.builder import build_bundle
from waystation.device.errors import BundleError
from waystation.device.manifest import Manifest
from waystation.device.telemetry import decimal_text

SIGNAL = """
[telemetry.signals.score]
edges = [0.5, 0.9]
reference = [1, 3, 6]
"""
ALERTS = """
[[telemetry.alerts]]
name = "slow"
function = "double"
p95_ms = 40.0

[[telemetry.alerts]]
name = "drift"
signal = "score"
psi = 0.2
min_calls = 5
"""


@pytest.fixture
def source(tmp_path) -> Path:
    return write_source(tmp_path / "tiny")


def declare(source: Path, text: str) -> Path:
    toml = source / "bundle.toml"
    toml.write_text(toml.read_text() + text)
    return toml


def line_of(toml: Path, text: str, nth: int = 0) -> int:
    """The 1-based line of the `nth` line of `toml` holding `text`."""
    return [i for i, line in enumerate(toml.read_text().splitlines(), start=1) if text in line][nth]


def build_error(source: Path, out: Path) -> str:
    with pytest.raises(BundleError) as caught:
        build_bundle(source, out, progress=lambda _m: None)
    assert not (out / "tiny").exists()  # nothing built, nothing signed
    return str(caught.value)


def test_declarations_reach_the_manifest_as_decimal_strings(source, tmp_path):
    declare(source, SIGNAL + ALERTS)
    folder = build_bundle(source, tmp_path / "out", progress=lambda _m: None)
    data = json.loads((folder / "manifest.json").read_text())
    assert data["telemetry"] == {
        "signals": {"score": {"edges": ["0.5", "0.9"], "reference": [1, 3, 6]}},
        "alerts": [{"name": "slow", "function": "double", "p95_ms": "40", "min_calls": 20},
                   {"name": "drift", "signal": "score", "psi": "0.2", "min_calls": 5}],
    }
    manifest = Manifest.from_json((folder / "manifest.json").read_bytes())
    assert [a.name for a in manifest.telemetry.alerts] == ["slow", "drift"]


def test_a_bundle_without_telemetry_has_no_field(source, tmp_path):
    folder = build_bundle(source, tmp_path / "out", progress=lambda _m: None)
    assert "telemetry" not in json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize(("text", "at", "message"), [
    ("[telemetry.signals.score]\nedges = [0.5, 0.5]\nreference = [1, 1, 1]\n", "edges",
     "[telemetry.signals.score] 'edges' must be strictly increasing: edges[1] = 0.5 is not above edges[0] = 0.5"),
    ("[telemetry.signals.score]\nedges = [0.5, 0.9]\nreference = [1, 1]\n", "reference",
     "[telemetry.signals.score] 'reference' has 2 counts; 2 edges make 3 bins, so it needs 3"),
    ("[telemetry.signals.score]\nedges = [0.5]\nreference = [1, -1]\n", "reference",
     "[telemetry.signals.score] 'reference' must be a list of counts (integers >= 0), got [1, -1]"),
    ("[telemetry.signals.score]\nedges = [0.5]\nreferense = [1, 1]\n", "referense",
     "[telemetry.signals.score] unknown key 'referense'; did you mean 'reference'? (known: edges, reference)"),
    (SIGNAL + '[[telemetry.alerts]]\nname = "drift"\nsignal = "scor"\npsi = 0.2\n', 'signal = "scor"',
     "[[telemetry.alerts]] 'drift': signal 'scor' is not declared in [telemetry.signals]; did you mean 'score'? "
     "(declared: score)"),
    ('[[telemetry.alerts]]\nname = "both"\np95_ms = 40\nerror_rate = 0.1\n', '[[telemetry.alerts]]',
     "[[telemetry.alerts]] 'both': give exactly one threshold of p95_ms, error_rate, psi; it has 2: p95_ms, error_rate"),
    ('[[telemetry.alerts]]\nname = "loose"\npsi = 0.2\n', "psi",
     "[[telemetry.alerts]] 'loose': a psi alert needs 'signal', the declared signal it watches"),
    ('[[telemetry.alerts]]\nname = "Slow"\np95_ms = 40\n', 'name = "Slow"',
     "[[telemetry.alerts]] 'Slow': 'name' must be lower-case letters, digits and '-', starting with a letter "
     "(e.g. \"slow-classify\"), got 'Slow'"),
    ('[[telemetry.alerts]]\nname = "errors"\nerror_rate = 5\n', "error_rate",
     "[[telemetry.alerts]] 'errors': 'error_rate' is a fraction of calls below 1 (0.05 is 5%), got 5"),
    ('[[telemetry.alerts]]\nname = "few"\np95_ms = 40\nmin_calls = 0\n', "min_calls",
     "[[telemetry.alerts]] 'few': 'min_calls' must be an integer >= 1, got 0"),
    ("[telemetry]\nsignal = 1\n", "signal", "[telemetry] unknown key 'signal'; did you mean 'signals'? (known: signals, alerts)"),
])
def test_a_bad_declaration_is_named_with_its_line(source, tmp_path, text, at, message):
    toml = declare(source, "\n" + text)
    error = build_error(source, tmp_path / "out")
    assert f"{toml}:{line_of(toml, at)}: {message}" in [line.strip() for line in error.splitlines()]


def test_the_line_is_that_of_the_alert_at_fault_not_the_first(source, tmp_path):
    toml = declare(source, SIGNAL + ALERTS + '\n[[telemetry.alerts]]\nname = "slow"\np95_ms = -1\n')
    error = build_error(source, tmp_path / "out")
    second = line_of(toml, 'name = "slow"', 1)
    assert error == (f"{toml} has 2 problems:\n"
                     f"  {toml}:{second}: [[telemetry.alerts]] 'slow': two alerts are named 'slow'\n"
                     f"  {toml}:{line_of(toml, 'p95_ms = -1')}: [[telemetry.alerts]] 'slow': 'p95_ms' must be above 0, got -1")


def test_an_alert_on_a_function_the_workflow_does_not_export_is_named(source, tmp_path):
    toml = declare(source, '\n[[telemetry.alerts]]\nname = "slow"\nfunction = "dubble"\np95_ms = 40\n')
    error = build_error(source, tmp_path / "out")
    assert error == (f"{toml}:{line_of(toml, 'function =')}: [[telemetry.alerts]] 'slow': function 'dubble' is not "
                     "exported by workflow.py; did you mean 'double'? (exported: double)")


def test_the_command_line_says_it_in_one_line(source, tmp_path):
    toml = declare(source, "\n[telemetry.signals.score]\nedges = [0.9, 0.5]\nreference = [1, 1, 1]\n")
    out = waystation("bundle", "build", source, "--out", tmp_path / "out")
    assert out.returncode != 0
    assert error_line(out) == (f"{toml}:{line_of(toml, 'edges')}: [telemetry.signals.score] 'edges' must be strictly "
                               "increasing: edges[1] = 0.5 is not above edges[0] = 0.9")


@pytest.mark.parametrize(("telemetry", "message"), [
    ({"signals": {"s": {"edges": [0.5], "reference": [1, 1]}}, "alerts": []},
     "manifest.telemetry.signals.s.edges[0]: 0.5 is a float; manifests hold integers only, so every signer agrees on its digits"),
    ({"signals": {"s": {"edges": ["1/2"], "reference": [1, 1]}}, "alerts": []},
     "manifest telemetry signal 's': 'edges' must be a non-empty list of decimal strings such as \"0.5\", got ['1/2']"),
    ({"signals": {"s": {"edges": ["0.9", "0.5"], "reference": [1, 1, 1]}}, "alerts": []},
     "manifest telemetry signal 's': 'edges' ['0.9', '0.5'] must be strictly increasing"),
    ({"signals": {}, "alerts": [{"name": "slow", "p95_ms": "40", "psi": "0.1"}]},
     "manifest telemetry alert #1 'slow': exactly one of p95_ms, error_rate, psi must be given, got ['p95_ms', 'psi']"),
    ({"signals": {}, "alerts": [{"name": "slow", "p95_ms": "4e1"}]},
     "manifest telemetry alert #1 'slow': p95_ms must be a decimal string above 0 such as \"40\", got '4e1'"),
    ({"signals": {}, "alerts": [{"name": "drift", "signal": "gone", "psi": "0.2"}]},
     "manifest telemetry alert #1 'drift': a psi alert names one declared signal, and only a psi alert does; got signal 'gone'"),
])
def test_the_manifest_parser_refuses_a_malformed_field(source, tmp_path, telemetry, message):
    folder = build_bundle(source, tmp_path / "out", progress=lambda _m: None)
    data = json.loads((folder / "manifest.json").read_text())
    with pytest.raises(BundleError) as caught:
        Manifest.from_dict({**data, "telemetry": telemetry})
    assert str(caught.value) == message


@pytest.mark.parametrize(("value", "text"), [(40.0, "40"), (40, "40"), (0.2, "0.2"), (1e-05, "0.00001"), (0.95, "0.95")])
def test_numbers_become_the_shortest_decimal_string(value, text):
    assert decimal_text(value) == text
