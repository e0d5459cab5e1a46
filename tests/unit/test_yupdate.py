"""The strict reader of Yjs updates (waystation.server.sync.yupdate): every update pycrdt and
real Yjs write is accepted and summarised as Yjs's own decoder counts it; the same update
with anything appended or cut short is refused; and through the real server, junk after an
update closes its sender with 1003 and leaves the document and everyone else alone."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText, create_update_message, merge_updates
from pycrdt import write_var_uint as var_uint

from waystation.server.sync.errors import ProtocolError
from waystation.server.sync.protocol import SyncMessage, parse
from waystation.server.sync.yupdate import MAX_DEPTH, check_state_vector, check_update

from server_process import Server
from test_sync_server import YClient, assert_still_syncing, register, run

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("yjs_updates.mjs")

needs_yjs = pytest.mark.skipif(not (ROOT / "node_modules/yjs").is_dir(), reason="npm package yjs is not installed (npm ci)")


# --- Yjs's own decoder, as the reference for the summary ---


class YjsCounter:
    """`node yjs_updates.mjs count`, kept running: Yjs's `decodeUpdate` counts for an update."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(["node", str(SCRIPT), "count"], cwd=ROOT, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def count(self, update: bytes) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(base64.b64encode(update).decode() + "\n")
        self.process.stdin.flush()
        return dict(json.loads(self.process.stdout.readline()))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def yjs() -> Iterator[YjsCounter]:
    counter = YjsCounter()
    yield counter
    counter.close()


def assert_strict(update: bytes, yjs: YjsCounter) -> None:
    """`update` is accepted, summarised as Yjs counts it, and refused with anything appended
    or cut anywhere (all cuts of a short update, 200 spread over a long one)."""
    summary = check_update(update)
    assert summary.length == len(update)
    assert yjs.count(update) == {"structs": summary.structs, "deleted_ranges": summary.deleted_ranges}
    for junk in (b"\x00", b"\x00\x00", b"\x01\x00\x00", bytes(1 << 10)):
        with pytest.raises(ProtocolError, match=f"update has {len(junk)} bytes after its delete set"):
            check_update(update + junk)
    step = max(1, len(update) // 200)
    for cut in range(0, len(update), step):
        with pytest.raises(ProtocolError):
            check_update(update[:cut])


# --- documents made by pycrdt, drawn by hypothesis ---

leaves = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20)
          | st.binary(max_size=20))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                      max_leaves=10)
attributes = st.dictionaries(st.sampled_from(["bold", "italic", "href", "size"]), values, min_size=1, max_size=2)
where = st.integers(0, 1 << 16)  # taken modulo the length at the time
# pycrdt indexes text by UTF-8 bytes and panics on an index inside a character, so indexed text
# is ASCII; other strings (values, keys, the nested text, Yjs's below) are any Unicode
ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30)
edits = st.one_of(
    st.tuples(st.just("text insert"), where, ascii_text, st.none() | attributes),
    st.tuples(st.just("text delete"), where, st.integers(1, 10)),
    st.tuples(st.just("text format"), where, st.integers(1, 10), attributes),
    st.tuples(st.just("text embed"), where, values),
    st.tuples(st.just("map set"), st.text(max_size=4), values),
    st.tuples(st.just("map nest"), st.text(max_size=4), st.sampled_from(["map", "array", "text", "doc"])),
    st.tuples(st.just("map delete"), st.text(max_size=4)),
    st.tuples(st.just("array insert"), where, st.lists(values, min_size=1, max_size=4)),
    st.tuples(st.just("array delete"), where, st.integers(1, 5)),
    st.tuples(st.just("nested edit"), st.text(max_size=4), values),
    st.tuples(st.just("xml element"), st.sampled_from(["p", "h1", "li"]),
              st.dictionaries(st.text(max_size=4), st.text(max_size=8), max_size=2), ascii_text),
    st.tuples(st.just("xml format"), where, st.integers(1, 5), attributes),
    st.tuples(st.just("xml delete"), where),
)


def apply_edit(doc: Doc[Any], edit: tuple[Any, ...]) -> None:
    text, map_, array, xml = (doc.get("text", type=Text), doc.get("map", type=Map), doc.get("array", type=Array),
                              doc.get("xml", type=XmlFragment))
    kind, *args = edit
    if kind == "text insert":
        text.insert(args[0] % (len(text) + 1), args[1], args[2])
    elif kind == "text delete" and len(text):
        start = args[0] % len(text)
        del text[start : min(len(text), start + args[1])]
    elif kind == "text format" and len(text):
        start = args[0] % len(text)
        text.format(start, min(len(text), start + args[1]), args[2])
    elif kind == "text embed":
        text.insert_embed(args[0] % (len(text) + 1), args[1])
    elif kind == "map set":
        map_[args[0]] = args[1]
    elif kind == "map nest":
        map_[args[0]] = {"map": lambda: Map({"k": 1}), "array": lambda: Array([1, "x"]), "text": lambda: Text("nested ✓ 😀"),
                         "doc": Doc}[args[1]]()
    elif kind == "map delete" and args[0] in map_:
        del map_[args[0]]
    elif kind == "array insert":
        index = args[0] % (len(array) + 1)
        for offset, value in enumerate(args[1]):
            array.insert(index + offset, value)
    elif kind == "array delete" and len(array):
        start = args[0] % len(array)
        del array[start : min(len(array), start + args[1])]
    elif kind == "nested edit":
        _nested_edit(map_, args[0], args[1])
    elif kind == "xml element":
        xml.children.append(XmlElement(args[0], args[1], [XmlText(args[2])]))
    elif kind == "xml format" and len(xml.children):
        node = list(xml.children)[-1]
        inner = next(iter(node.children)) if isinstance(node, XmlElement) and len(node.children) else None
        if isinstance(inner, XmlText) and len(str(inner)):
            start = args[0] % len(str(inner))
            inner.format(start, min(len(str(inner)), start + args[1]), args[2])
    elif kind == "xml delete" and len(xml.children):
        del xml.children[args[0] % len(xml.children)]


def _nested_edit(map_: Map[Any], key: str, value: object) -> None:
    """Edit the Y type `map_[key]` if there is one: items whose parent is an ID, not a root name."""
    inner = map_.get(key)
    if isinstance(inner, Map):
        inner["k"] = value
    elif isinstance(inner, Array):
        inner.append(value)
    elif isinstance(inner, Text):
        inner.insert(0, "".join(c for c in str(value)[:10] if c.isascii()) or "x")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 1), edits), min_size=1, max_size=25))
def test_every_update_pycrdt_writes_is_accepted_and_nothing_else(
    yjs: YjsCounter, steps: list[tuple[int, tuple[Any, ...]]],
) -> None:
    replicas: list[Doc[Any]] = [Doc(), Doc()]
    incremental: list[bytes] = []
    for replica, edit in steps:
        doc = replicas[replica]
        before = doc.get_state()
        apply_edit(doc, edit)
        incremental.append(doc.get_update(before))
    for update in incremental:
        replicas[0].apply_update(update)  # the other replica's too: updates from two clients
    updates = [*incremental, replicas[0].get_update(), replicas[1].get_update(),
               replicas[0].get_update(replicas[1].get_state()), merge_updates(*incremental)]
    for update in updates:
        assert_strict(update, yjs)


def test_the_empty_update_and_state_vector_pass() -> None:
    empty = Doc().get_update()
    assert empty == b"\x00\x00"
    summary = check_update(empty)
    assert (summary.structs, summary.deleted_ranges, summary.length) == (0, 0, 2)
    assert check_state_vector(b"\x00") == 0
    message = parse(create_update_message(empty))
    assert isinstance(message, SyncMessage) and message.summary == summary


# --- updates made by real Yjs ---


@needs_yjs
def test_every_update_real_yjs_writes_is_accepted_and_nothing_else(yjs: YjsCounter) -> None:
    out = subprocess.run(["node", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout
    updates = {line["name"]: base64.b64decode(line["update"]) for line in map(json.loads, out.splitlines())}
    assert len(updates) > 20 and "updates merged around a gap" in updates
    for name, update in updates.items():
        try:
            assert_strict(update, yjs)
        except AssertionError as exc:
            raise AssertionError(f"Yjs update {name!r}: {exc}") from exc
    merged = check_update(updates["updates merged around a gap"])
    assert merged.structs > 1 and merged.deleted_ranges > 0


# --- malformed updates, each refused with a message that says what and where ---

ID = b"\x01\x00"  # client 1, clock 0
ROOT_MAP = b"\x01\x03map"  # parent: the root type "map"


def update(*structs: bytes, delete_set: bytes = b"\x00") -> bytes:
    """One client (1, clock 0) holding `structs`, then `delete_set`."""
    return b"\x01" + var_uint(len(structs)) + b"\x01\x00" + b"".join(structs) + delete_set


def any_item(*values: bytes) -> bytes:
    """An item at map["k"] holding lib0 Any `values`."""
    return b"\x28" + ROOT_MAP + b"\x01k" + var_uint(len(values)) + b"".join(values)


def string(text: bytes) -> bytes:
    return var_uint(len(text)) + text


def nested_array(depth: int) -> bytes:
    return b"\x75\x01" * depth + b"\x7e"


MALFORMED = {
    "unknown content type": (update(b"\x11" + b"\x01\x01t"), r"unknown content type 17 at byte 4"),
    "GC with flag bits": (update(b"\x80\x01"), r"GC struct with flags 0x80 at byte 4"),
    "parent info neither 0 nor 1": (update(b"\x04\x02" + string(b"x")), r"parent info 2 at byte 5 is neither 0 nor 1"),
    "unknown Y type": (update(b"\x07" + ROOT_MAP + b"\x07"), r"unknown type 7 at byte 10"),
    "unknown value type": (update(any_item(b"\x73")), r"unknown value type 115 at byte 13"),
    "embed that is not UTF-8": (update(b"\x05" + ROOT_MAP + string(b"\"\xff\"")), r"JSON at byte 11 is not UTF-8"),
    "embed that is not JSON": (update(b"\x05" + ROOT_MAP + string(b"{x}")), r"JSON at byte 11 does not parse"),
    "embed of NaN": (update(b"\x05" + ROOT_MAP + string(b"NaN")), r"JSON at byte 11 does not parse"),
    "subdocument options that are not an object": (update(b"\x09" + ROOT_MAP + string(b"guid") + b"\x7e"),
                                                   r"subdocument options at byte 15 are not an object"),
    "number beyond 2**53": (update(b"\x01" + ROOT_MAP + b"\xff" * 7 + b"\x10"), r"number at byte 10 is too large"),
    "values nested too deep": (update(any_item(nested_array(MAX_DEPTH))), f"values nested deeper than {MAX_DEPTH}"),
    "binary longer than the update": (update(b"\x03" + ROOT_MAP + b"\x05ab"),
                                      r"update ends 2 bytes short of a 5-byte field at byte 11"),
    "no delete set": (update(b"\x01" + ROOT_MAP + b"\x01", delete_set=b""), r"update ends inside its encoding"),
    "junk after the delete set": (b"\x00\x00" + bytes(1 << 20), r"update has 1048576 bytes after its delete set"),
}


@pytest.mark.parametrize(("data", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_updates_are_refused_saying_why(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        check_update(data)
    with pytest.raises(ProtocolError, match=message):
        parse(create_update_message(data))


NOT_UTF8 = {
    "string content": update(b"\x04" + ROOT_MAP + string(b"\xff\xfe")),
    "string value": update(any_item(b"\x77" + string(b"\xff"))),
    "object key": update(any_item(b"\x76\x01" + string(b"\xff") + b"\x7e")),
    "map key": update(b"\x28" + ROOT_MAP + string(b"\xff") + b"\x01\x7e"),
    "root type name": update(b"\x28\x01" + string(b"\xff") + b"\x01k\x01\x7e"),
    "XML element name": update(b"\x07" + ROOT_MAP + b"\x03" + string(b"\xff")),
}


@pytest.mark.parametrize("data", NOT_UTF8.values(), ids=NOT_UTF8.keys())
def test_strings_that_are_not_utf8_are_left_to_pycrdt_which_refuses_them(data: bytes) -> None:
    """The reader skips strings by length (checking them cost a fifth of its time), because
    pycrdt refuses every string that is not UTF-8 before the room stores or relays anything."""
    assert check_update(data).structs == 1
    with pytest.raises(ValueError, match="Cannot decode update"):
        Doc().apply_update(data)


def test_state_vectors_are_read_exactly() -> None:
    doc: Doc[Any] = Doc()
    doc.get("text", type=Text).insert(0, "x")
    assert check_state_vector(doc.get_state()) == 1
    with pytest.raises(ProtocolError, match="state vector has 3 bytes after its 1 clients"):
        check_state_vector(doc.get_state() + b"abc")
    with pytest.raises(ProtocolError, match="state vector ends inside its encoding"):
        check_state_vector(doc.get_state()[:-1])
    with pytest.raises(ProtocolError, match="a number between bytes 1 and 10 is too large"):
        check_state_vector(b"\x01" + b"\xff" * 7 + b"\x10" + b"\x00")  # a client number of 2**53
    with pytest.raises(ProtocolError, match="state vector has 2 bytes after"):
        parse(b"\x00\x00" + string(b"\x00\x00\x00"))  # sync step 1


def test_values_nested_up_to_the_limit_pass_and_deeper_ones_that_crash_pycrdt_do_not() -> None:
    deepest = update(any_item(nested_array(MAX_DEPTH - 1)))
    check_update(deepest)
    Doc().apply_update(deepest)  # pycrdt reads it too
    # 100,000 deep (200 kB) kills the process that applies it with pycrdt 0.14.13 (a stack overflow)
    crashing = update(any_item(nested_array(100_000)))
    with pytest.raises(ProtocolError, match=f"values nested deeper than {MAX_DEPTH}"):
        check_update(crashing)


def test_a_large_update_is_read_at_over_5_mb_per_second() -> None:
    """Dense edits (a struct per word, IDs with 8-byte client numbers) and maps of values of
    every kind, 1.8 MB: measured 20-35 MB/s of CPU time on this noisy 2-core machine (17 MB of
    the same: 28 MB/s), about as fast as pycrdt applies it. A quadratic slip fails this."""
    doc: Doc[Any] = Doc()
    text, map_ = doc.get("text", type=Text), doc.get("map", type=Map)
    for i in range(8_000):
        text.insert((i * 7919) % (len(text) + 1), f"word{i} ")
    with doc.transaction():
        for i in range(10_000):
            map_[f"k{i}"] = [{"n": i, "f": i / 3, "s": "v" * 20, "b": bytes(8), "l": [None, True, -i]}, "text " * 10]
    for i in range(0, 8_000, 10):
        del text[i : i + 3]
    data = doc.get_update()
    started = time.process_time()
    summary = check_update(data)
    seconds = time.process_time() - started
    assert summary.length == len(data) > 3 << 19 and summary.structs > 20_000 and summary.deleted_ranges > 500
    assert len(data) / seconds > 5e6, f"{len(data) / seconds / 1e6:.1f} MB/s"


# --- through the real server ---


def junk_after(bad: YClient) -> bytes:
    """A valid update of `bad`'s (it adds "smuggled") with 1 MiB of zeros after it."""
    state = bad.doc.get_state()
    bad.items.append("smuggled")
    return bad.doc.get_update(state) + bytes(1 << 20)


def nested_deep(bad: YClient) -> bytes:
    """An array nested 100,000 deep (200 kB): pycrdt 0.14.13 overflows its stack on it, which
    killed the whole server."""
    return update(any_item(nested_array(100_000)))


@pytest.mark.parametrize("attack", [junk_after, nested_deep])
def test_a_malformed_update_closes_its_sender_and_changes_nothing(site: Path, tmp_path: Path, attack: Any) -> None:
    # messages up to 4 MiB, so that 1 MiB of junk after an update reaches the parser
    server = Server(site, tmp_path, WAYSTATION_MAX_MESSAGE_BYTES=str(4 << 20)).start()
    try:
        user, token = register(server)
        run(send_malformed_update(server, f"{user}/doc", token, attack))
    finally:
        server.stop()


async def send_malformed_update(server: Server, room: str, token: str, attack: Any) -> None:
    a = await YClient.connect(server, room, token)
    b = await YClient.connect(server, room, token)
    bad = await YClient.connect(server, room, token)
    await asyncio.gather(a.synced(), b.synced(), bad.synced())
    await assert_still_syncing(a, b, "before")
    started = time.monotonic()
    await asyncio.gather(bad.ws.send(create_update_message(attack(bad))), assert_still_syncing(a, b, "during"))
    assert time.monotonic() - started < 1.0  # the others' round trip is unaffected
    assert await bad.closed() == 1003
    assert bad.ws.close_reason == "not the y-websocket protocol"
    await assert_still_syncing(a, b, "after")
    fresh = await YClient.connect(server, room, token)
    await fresh.synced()
    assert list(fresh.items) == list(a.items) == ["before", "during", "after"]  # nothing of the update applied
    assert max(map(len, a.received + b.received)) < 1 << 10  # nor relayed (junk after an update was, 1 MiB)
    assert len(fresh.doc.get("map", type=Map)) == 0
    await asyncio.gather(a.close(), b.close(), fresh.close())
