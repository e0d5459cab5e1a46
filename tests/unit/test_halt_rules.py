"""Halt rules: the text an operator writes, and the verdict over two versions' numbers."""

import pytest

from waystation.server.halt_rules import DEFAULT_MIN_DEVICES, HaltRules, Term, parse_halt_rules
from waystation.server.version_stats import VersionStats


def stats(devices=20, calls=1000, errors=0, p50=10.0, p95=20.0, p99=30.0) -> VersionStats:
    return VersionStats(devices=devices, calls=calls, errors=errors, p50=p50, p95=p95, p99=p99)


def test_parse_reads_every_kind_of_term():
    rules = parse_halt_rules("errors>1%, errors>2x,p50>15ms,p95>1.5x,p99>250.5ms,devices>=12")
    assert rules == HaltRules(
        (Term("errors", 1, "%"), Term("errors", 2, "x"), Term("p50", 15, "ms"),
         Term("p95", 1.5, "x"), Term("p99", 250.5, "ms")),
        12,
    )
    assert str(rules) == "errors>1%,errors>2x,p50>15ms,p95>1.5x,p99>250.5ms,devices>=12"
    assert parse_halt_rules(str(rules)) == rules


def test_devices_defaults_to_ten():
    assert parse_halt_rules("errors>1%").min_devices == DEFAULT_MIN_DEVICES == 10


@pytest.mark.parametrize(("text", "names"), [
    ("", "empty"),
    ("errors>1%,bogus", "'bogus'"),
    ("errors>1ms", "errors takes % or x, not ms"),
    ("p95>5%", "p95 takes ms or x, not %"),
    ("p95>0ms", "above 0"),
    ("errors>100%", "below 100%"),
    ("errors>1%,devices>=0", "at least 1"),
    ("errors>1%,devices>=3,devices>=4", "twice"),
    ("errors>1%,errors>2%", "twice"),
    ("devices>=5", "no errors or latency term"),
    ("errors>-1%", "'errors>-1%'"),
    ("p95 > 1.5x", "'p95 > 1.5x'"),
])
def test_parse_names_the_bad_part(text, names):
    with pytest.raises(ValueError, match="halt rule") as caught:
        parse_halt_rules(text)
    assert names in str(caught.value)


def test_absolute_error_rate():
    rules = parse_halt_rules("errors>1%,devices>=10")
    assert rules.check(stats(devices=12, calls=100, errors=50), None) == "halted: error rate 50.0% > 1% over 12 devices"
    assert rules.check(stats(calls=1000, errors=10), None) is None  # exactly 1% is not above it
    assert rules.check(stats(calls=1000, errors=11), None) is not None


def test_nothing_is_decided_below_the_devices_minimum():
    rules = parse_halt_rules("errors>1%,p95>10ms,devices>=10")
    assert rules.check(stats(devices=9, errors=900, p95=999), stats()) is None
    assert rules.check(stats(devices=10, errors=900, p95=999), stats()) is not None
    assert rules.check(stats(devices=50, calls=0, errors=0, p50=None, p95=None, p99=None), stats()) is None


def test_relative_latency_against_the_previous_version():
    rules = parse_halt_rules("p95>1.5x,devices>=10")
    old = stats(p95=40.0)
    assert rules.check(stats(p95=59.0), old) is None
    assert rules.check(stats(devices=11, p95=61.0), old) == (
        "halted: p95 61.0 ms > 1.5x the previous version's 40.0 ms over 11 devices")
    # Without the previous version's numbers a relative term waits.
    assert rules.check(stats(p95=500.0), None) is None
    assert rules.check(stats(p95=500.0), stats(calls=0, p50=None, p95=None, p99=None)) is None


def test_absolute_latency():
    rules = parse_halt_rules("p99>100ms")
    assert rules.check(stats(p99=100.0), None) is None
    assert rules.check(stats(p99=100.5), None) == "halted: p99 100.5 ms > 100 ms over 20 devices"


def test_relative_error_rate_floors_a_clean_previous_version():
    rules = parse_halt_rules("errors>2x")
    clean = stats(calls=5000, errors=0)
    # 1 error in 1000 calls is 0.1%: not above 2x the 0.1% floor.
    assert rules.check(stats(calls=1000, errors=1), clean) is None
    assert rules.check(stats(calls=1000, errors=3), clean) == (
        "halted: error rate 0.3% > 2x the previous version's 0.0% over 20 devices")
    assert rules.check(stats(calls=1000, errors=30), stats(calls=1000, errors=20)) is None
    assert rules.check(stats(calls=1000, errors=41), stats(calls=1000, errors=20)) is not None


def test_the_first_breached_term_is_the_reason():
    rules = parse_halt_rules("p95>1.5x,errors>1%")
    reason = rules.check(stats(errors=500, p95=100.0), stats(p95=20.0))
    assert reason is not None and reason.startswith("halted: p95 100.0 ms")
