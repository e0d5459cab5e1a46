"""`ctx.state` on both hosts: Yjs through Pyodide under Node (state_harness.mjs) and pycrdt
on CPython give the same answers, and their updates apply to each other and converge."""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

HERE = Path(__file__).parent
DRIVER = HERE / "state_driver.py"
_spec = importlib.util.spec_from_file_location("state_driver", DRIVER)
assert _spec is not None and _spec.loader is not None
driver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(driver)
_names = itertools.count()


class NodeHost:
    """The harness in a child process: one JSON line out, one back."""

    def __init__(self, project_root: Path) -> None:
        self.process = subprocess.Popen(
            ["node", str(HERE / "state_harness.mjs"), str(project_root / "py_src"), str(DRIVER)],
            cwd=project_root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def send(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the state harness exited"
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


class LocalHost:
    """The same driver in this process, over pycrdt, through the same JSON."""

    def send(self, command: dict[str, Any]) -> dict[str, Any]:
        return json.loads(driver.handle(json.dumps(command)))  # type: ignore[no-any-return]


class Replica:
    """One document on one host, and every update it has emitted (made here or applied)."""

    def __init__(self, host: NodeHost | LocalHost, label: str) -> None:
        self.host, self.doc = host, f"{label}-{next(_names)}"
        self.call("watch")
        self.seen: list[str] = []

    def call(self, cmd: str, **args: Any) -> Any:
        reply = self.host.send({"cmd": cmd, "doc": self.doc, **args})
        assert reply["ok"], reply["error"]
        return reply["value"]

    def edit(self, ops: list[list[Any]], transaction: bool = False) -> Any:
        snapshot = self.call("ops", ops=ops, transaction=transaction)
        self.seen += self.call("updates")
        return snapshot

    def apply(self, update: str | list[str]) -> None:
        self.call("apply", update=update)
        self.seen += self.call("updates")

    def pull(self, other: Replica) -> None:
        """Sync steps 1 and 2, as y-websocket does: what `other` has that this lacks."""
        self.apply(other.call("encode", since=self.call("state_vector")))

    def snapshot(self) -> Any:
        return self.call("snapshot")


@pytest.fixture(scope="module")
def yjs(project_root: Path) -> Iterator[NodeHost]:
    host = NodeHost(project_root)
    yield host
    host.close()


def test_the_harness_runs_the_browser_backend(yjs: NodeHost) -> None:
    assert yjs.send({"cmd": "host"})["value"] == {"backend": "browser", "platform": "emscripten"}
    assert LocalHost().send({"cmd": "host"})["value"]["backend"] == "native"


@pytest.mark.parametrize("name", sorted(driver.CHECKS))
def test_api_checks_answer_the_same_on_both_hosts(yjs: NodeHost, name: str) -> None:
    browser, native = (host.send({"cmd": "check", "name": name}) for host in (yjs, LocalHost()))
    assert browser["ok"], browser["error"]
    assert native["ok"], native["error"]
    if name == "check_reads_in_a_transaction_see_its_writes":
        # The one documented difference: in the browser a read inside a transaction sends
        # the writes queued before it, so that transaction makes two updates instead of one.
        assert (browser["value"].pop("total_updates"), native["value"].pop("total_updates")) == (3, 2)
    assert browser["value"] == native["value"]


EVERY_OP = [
    ["set", "a", {"x": [1, 2.5, None, True]}], ["set", "b", "héllo 😀"], ["set", "c", 3], ["delete_key", "c"],
    ["append", 1], ["extend", [2, "three", [4]]], ["insert", 1, "one"], ["insert", -1, "before last"],
    ["replace_item", 0, {"zero": 0}], ["delete_items", 2, 2], ["insert", 99, "end"],
    ["text_insert", 0, "a😀b"], ["text_insert", 2, "X"], ["text_insert", -1, "Y"], ["text_delete", 0, 2],
    ["count", 5], ["count", -2],
]


@pytest.mark.parametrize("transaction", [False, True])
def test_the_same_operations_give_the_same_json(yjs: NodeHost, transaction: bool) -> None:
    browser, native = Replica(yjs, "same"), Replica(LocalHost(), "same")
    expected = native.edit(EVERY_OP, transaction)
    assert browser.edit(EVERY_OP, transaction) == expected
    assert expected == {"m": {"a": {"x": [1, 2.5, None, True]}, "b": "héllo 😀"},
                        "l": [{"zero": 0}, "one", "before last", [4], "end"], "t": "XYb", "c": 3}
    # Yjs itself reads what Python wrote as plain JSON content.
    assert yjs.send({"cmd": "js_snapshot", "doc": browser.doc})["value"] == expected


def test_updates_cross_both_ways_and_concurrent_edits_converge(yjs: NodeHost) -> None:
    browser, native = Replica(yjs, "cross"), Replica(LocalHost(), "cross")
    browser.edit([["set", "from", "yjs"], ["append", "y"], ["text_insert", 0, "yjs "], ["count", 2]])
    native.edit([["set", "from", "pycrdt"], ["append", "p"], ["text_insert", 0, "pycrdt "], ["count", 3]])
    native.apply(browser.call("encode"))  # a whole Yjs document into pycrdt
    browser.pull(native)  # and only what Yjs lacks back
    both = browser.snapshot()
    assert native.snapshot() == both
    assert both["c"] == 5 and sorted(both["l"]) == ["p", "y"] and both["m"]["from"] in ("yjs", "pycrdt")
    assert sorted(both["t"].split()) == ["pycrdt", "yjs"]
    assert yjs.send({"cmd": "js_snapshot", "doc": browser.doc})["value"] == both


def test_observed_updates_replay_on_the_other_host(yjs: NodeHost) -> None:
    browser, native = Replica(yjs, "observed"), Replica(LocalHost(), "observed")
    browser.edit([["append", 1]])
    browser.edit([["append", 2], ["count", 1]], transaction=True)
    assert len(browser.seen) == 2  # one update per transaction
    for update in browser.seen:
        native.apply(update)
    assert native.snapshot() == browser.snapshot()
    assert len(native.seen) == 2  # applying an update is a change too


def test_a_bad_update_is_a_state_error_on_both_hosts(yjs: NodeHost) -> None:
    for host in (yjs, LocalHost()):
        reply = host.send({"cmd": "apply", "doc": f"bad-{next(_names)}", "update": "//8A"})
        assert reply["ok"] is False and reply["type"] == "StateError", reply


# pycrdt 0.14.13 applying these one at a time in the order 1, 2, 0 loses "a" (worked around
# in hosts/state_native.py; a duplicate of the last update would heal it, so no resend here).
GAP_FILLED_LAST = [[["set", "a", 0]], [["text_insert", 0, "x"]], [["set", "a", 1]]]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("route", ["yjs->pycrdt", "pycrdt->pycrdt", "pycrdt->yjs"])
def test_updates_that_arrive_before_their_predecessors_end_right(yjs: NodeHost, route: str, order) -> None:
    hosts: dict[str, NodeHost | LocalHost] = {"yjs": yjs, "pycrdt": LocalHost()}
    src, dst = (Replica(hosts[name], name) for name in route.split("->"))
    for ops in GAP_FILLED_LAST:
        src.edit(ops)
    for i in order:
        dst.apply(src.seen[i])
    assert dst.snapshot() == src.snapshot() == {"m": {"a": 1}, "l": [], "t": "x", "c": 0}


# Property: whatever edits Yjs and pycrdt replicas make, and whatever order their updates
# travel in (late, repeated, before their predecessors), they end equal once they sync.

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False)
    | st.text("ab😀é", max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner, max_size=3),
    max_leaves=5,
)
op = st.one_of(
    st.tuples(st.just("set"), st.sampled_from("ab"), json_value),
    st.tuples(st.just("delete_key"), st.sampled_from("ab")),
    st.tuples(st.just("insert"), st.integers(-3, 6), json_value),
    st.tuples(st.just("append"), json_value),
    st.tuples(st.just("extend"), st.lists(json_value, max_size=3)),
    st.tuples(st.just("delete_items"), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("replace_item"), st.integers(0, 9), json_value),
    st.tuples(st.just("text_insert"), st.integers(-2, 10), st.text("ab😀é\n", min_size=1, max_size=4)),
    st.tuples(st.just("text_delete"), st.integers(-2, 10), st.integers(0, 4)),
    st.tuples(st.just("count"), st.integers(-3, 5)),
).map(list)
REPLICAS = 4  # 0 and 1 on Yjs, 2 and 3 on pycrdt
step = st.one_of(
    st.tuples(st.just("edit"), st.integers(0, REPLICAS - 1), st.lists(op, min_size=1, max_size=3), st.booleans()),
    st.tuples(st.just("deliver"), st.integers(0, REPLICAS - 1), st.integers(0, REPLICAS - 1), st.integers(0, 50)),
    st.tuples(st.just("pull"), st.integers(0, REPLICAS - 1), st.integers(0, REPLICAS - 1)),
    # every update src has emitted, shuffled
    st.tuples(st.just("scatter"), st.integers(0, REPLICAS - 1), st.integers(0, REPLICAS - 1), st.integers(0, 2**16)),
)
@settings(max_examples=30, deadline=None)
@given(steps=st.lists(step, max_size=25), seed=st.integers(0, 2**16))
def test_yjs_and_pycrdt_replicas_converge_whatever_order_updates_travel_in(yjs: NodeHost, steps, seed) -> None:
    replicas = [Replica(yjs, "yjs"), Replica(yjs, "yjs"), Replica(LocalHost(), "py"), Replica(LocalHost(), "py")]
    for kind, *args in steps:
        if kind == "edit":
            replicas[args[0]].edit(args[1], args[2])
            continue
        src, dst = replicas[args[0]], replicas[args[1]]
        if kind == "deliver" and src.seen:  # one update src has emitted, any of them
            dst.apply(src.seen[args[2] % len(src.seen)])
        elif kind == "scatter":
            dst.apply(random.Random(args[2]).sample(src.seen, len(src.seen)))
        elif kind == "pull":
            dst.pull(src)
    # Finally every replica gets every update the others emitted, shuffled: no state vector
    # tells a sender what to resend, so an update integrated wrong stays wrong.
    emitted = [list(r.seen) for r in replicas]
    shuffle = random.Random(seed)
    for i, dst in enumerate(replicas):
        updates = [u for j, seen in enumerate(emitted) if j != i for u in seen]
        dst.apply(shuffle.sample(updates, len(updates)))
    snapshots = [r.snapshot() for r in replicas]
    assert all(s == snapshots[0] for s in snapshots), snapshots
    assert yjs.send({"cmd": "js_snapshot", "doc": replicas[0].doc})["value"] == snapshots[0]
