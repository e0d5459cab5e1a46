"""Each attack on the sync server, run at a size that takes seconds against a real `waystation
serve` with its limits set small: the refusal (close code and reason, the document unchanged)
and a control client that keeps its round trip short meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from pycrdt import Doc, Text, create_awareness_message, create_update_message, write_var_uint

from waystation.server.storage import Storage

from server_process import Server
from test_sync_server import YClient, register, run, until

KIB = 1 << 10
LIMITS = {
    "WAYSTATION_MAX_MESSAGE_BYTES": str(256 * KIB),  # so updates held for predecessors stop at 1 MiB
    "WAYSTATION_MAX_DOCUMENT_BYTES": str(2048 * KIB),
    "WAYSTATION_MAX_DOCUMENTS_PER_USER": "3",
    "WAYSTATION_MESSAGES_PER_SECOND": "100",
    "WAYSTATION_AWARENESS_STATE_BYTES": "1024",
    "WAYSTATION_AWARENESS_ENTRIES_PER_ROOM": "4",
    "WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS": "100000",
}
ROUND_TRIP_BOUND = 1.0  # seconds; before, these attacks stalled everyone for 15 s to 76 s


@pytest.fixture(scope="module")
def server(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(site, tmp_path_factory.mktemp("limits-data"), **LIMITS).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def unpaced_server(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same limits, but reading every socket as fast as it sends."""
    srv = Server(site, tmp_path_factory.mktemp("unpaced-data"), **{**LIMITS, "WAYSTATION_MESSAGES_PER_SECOND": "0"}).start()
    yield srv
    srv.stop()


class Control:
    """A client in its own room (or a given one) timing edit + acknowledgement round trips, in the background."""

    def __init__(self, client: YClient) -> None:
        self.client, self.round_trips = client, []
        self.task = asyncio.create_task(self._loop())

    @classmethod
    async def start(cls, server: Server, room: str | None = None, token: str | None = None) -> Control:
        if room is None:
            user, token = register(server)
            room = f"{user}/control"
        client = await YClient.connect(server, room, token)
        await client.synced()
        return cls(client)

    async def _loop(self) -> None:
        for i in range(1_000_000):
            began = time.monotonic()
            await self.client.edit(lambda c, i=i: c.items.append(i))
            await self.client.synced()
            self.round_trips.append(time.monotonic() - began)
            await asyncio.sleep(0.02)

    async def stop(self) -> float:
        """The longest round trip seen (at least one ran)."""
        await until(lambda: len(self.round_trips) >= 3)
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.close()
        return max(self.round_trips)


def update_of(change: str, doc: Doc | None = None) -> tuple[Doc, bytes]:
    doc = doc or Doc()
    text = doc.get("text", type=Text)
    state = doc.get_state()
    text.insert(len(text), change)
    return doc, doc.get_update(state)


def test_an_update_past_max_document_bytes_is_refused_with_4413(server: Server) -> None:
    user, token = register(server)

    async def scenario() -> None:
        control, neighbour = await Control.start(server), await Control.start(server, f"{user}/doc", token)
        attacker = await YClient.connect(server, f"{user}/doc", token)
        await attacker.synced()
        sent = 0
        while attacker.ws.close_code is None and sent < 16:  # 200 kB a time toward 2 MiB
            await attacker.edit(lambda c, n=sent: c.text.insert(len(c.text), str(n % 10) * 200_000))
            sent += 1
            await asyncio.sleep(0.05)
        assert await attacker.closed() == 4413 and attacker.ws.close_reason == "document too large"
        fresh = await YClient.connect(server, f"{user}/doc", token)
        await fresh.synced()
        kept = len(str(fresh.text))
        assert 1_600_000 <= kept <= 2048 * KIB and kept % 200_000 == 0  # whole updates, none past the limit
        assert await neighbour.stop() < ROUND_TRIP_BOUND and await control.stop() < ROUND_TRIP_BOUND
        await fresh.close()

    run(scenario())


def test_updates_missing_a_predecessor_are_held_cheaply_applied_when_it_comes_and_bounded(server: Server) -> None:
    user, token = register(server)

    async def scenario() -> None:
        control = await Control.start(server, f"{user}/doc", token)
        writer = await YClient.connect(server, f"{user}/doc", token)
        await writer.synced()
        for i in range(3):  # a 600 kB document
            await writer.edit(lambda c, i=i: c.text.insert(0, str(i) * 200_000))
        await writer.synced()
        author, first = update_of("gap")
        _, second = update_of("-filled", author)
        await writer.ws.send(create_update_message(second))  # its predecessor never sent
        began = time.monotonic()
        for i in range(200):  # each used to rebuild the whole document
            await writer.edit(lambda c, i=i: c.items.append(i))
        await writer.synced()
        tiny = time.monotonic() - began
        assert "-filled" not in str(writer.text)
        await writer.ws.send(create_update_message(first))  # the gap is filled: both apply
        await writer.synced()
        await until(lambda: "gap-filled" in str(control.client.text))
        holder = await YClient.connect(server, f"{user}/doc", token)
        await holder.synced()
        orphan = Doc()
        for i in range(8):  # 8 x 150 kB held for a missing predecessor: past 1 MiB
            update_of("x", orphan)  # never sent
            _, later = update_of(str(i) * 150_000, orphan)
            try:
                await holder.ws.send(create_update_message(later))
            except websockets.ConnectionClosed:
                break
            await asyncio.sleep(0.05)
        assert await holder.closed() == 4412
        assert holder.ws.close_reason == "too many updates waiting for missing predecessors"
        assert await control.stop() < ROUND_TRIP_BOUND
        assert tiny < 10  # 200 messages, paced at 100 a second; before: 0.5 s of event loop each
        await writer.close()

    run(scenario())


def awareness_message(client_id: int, clock: int, state: str) -> bytes:
    body = write_var_uint(1) + write_var_uint(client_id) + write_var_uint(clock)
    return create_awareness_message(body + write_var_uint(len(state.encode())) + state.encode())


def test_awareness_is_bounded_and_coalesced_for_readers_that_fall_behind(unpaced_server: Server) -> None:
    server = unpaced_server
    user, token = register(server)

    async def scenario() -> None:
        control = await Control.start(server)
        neighbour = await Control.start(server, f"{user}/room", token)
        sleepers = [await YClient.connect(server, f"{user}/room", token) for _ in range(20)]
        for sleeper in sleepers:
            await sleeper.synced()
            sleeper.reader.cancel()  # never reads again
        chatty = await YClient.connect(server, f"{user}/room", token)
        await chatty.synced()
        for clock in range(1, 8001):  # 8,000 states of ~1 kB, for one id: 8 MB per sleeper before
            await chatty.ws.send(awareness_message(7, clock, '{"c":"' + "z" * 1000 + f'{clock:05}"' + "}"))
        for i in range(10, 30):  # 20 more ids from one connection: a room keeps 4, a connection 8
            await chatty.ws.send(awareness_message(i, 1, '{"n":1}'))
        await chatty.synced()
        late = await YClient.connect(server, f"{user}/room", token)
        await late.synced()
        present = [m for m in late.received if m[0] == 1]
        assert len(present) == 1 and present[0].count(b'{"') == 4  # one message: the 4 ids the room keeps
        sleeper = sleepers[0]
        sleeper.reader = asyncio.create_task(sleeper._read())  # it reads again: what waited for it
        await until(lambda: any(b"08000" in m for m in sleeper.received))
        awareness = [m for m in sleeper.received if m[0] == 1]
        assert len(awareness) < 4000  # coalesced: what socket buffers held, then the newest state
        assert await control.stop() < ROUND_TRIP_BOUND and await neighbour.stop() < ROUND_TRIP_BOUND
        big = await YClient.connect(server, f"{user}/room", token)
        await big.ws.send(awareness_message(99, 1, '{"s":"' + "q" * 2000 + '"}'))
        assert await big.closed() == 1009 and big.ws.close_reason == "awareness state too large"

    run(scenario())


def test_a_fast_sender_is_paced_not_refused_and_others_do_not_notice(server: Server) -> None:
    user, token = register(server)

    async def scenario() -> None:
        control = await Control.start(server, f"{user}/doc", token)
        fast = await YClient.connect(server, f"{user}/doc", token)
        await fast.synced()
        began = time.monotonic()
        for i in range(400):
            await fast.edit(lambda c, i=i: c.items.append(i))
        await fast.synced()
        took = time.monotonic() - began
        assert took > 2.0  # 400 messages at 100 a second, past a burst of 100
        assert fast.ws.close_code is None
        await until(lambda: len(control.client.items) >= 400)
        assert await control.stop() < ROUND_TRIP_BOUND
        await fast.close()

    run(scenario())


def test_more_sockets_buy_a_user_no_more_pace(server: Server) -> None:
    user, token = register(server)

    async def send(room: str) -> None:
        client = await YClient.connect(server, room, token)
        await client.synced()
        for i in range(200):
            await client.edit(lambda c, i=i: c.items.append(i))
        await client.synced()
        await client.close()

    async def scenario() -> None:
        began = time.monotonic()
        await asyncio.gather(send(f"{user}/one"), send(f"{user}/two"))
        # 400 messages of one user at 100 a second past one burst of 100: about 3 s, where
        # two sockets paced each on its own would take about 1 s.
        assert time.monotonic() - began > 2.5

    run(scenario())


def test_a_new_document_past_max_documents_per_user_is_refused_with_4413(server: Server) -> None:
    user, token = register(server)

    async def scenario() -> None:
        for name in ("a", "b", "c"):
            client = await YClient.connect(server, f"{user}/{name}", token)
            await client.edit(lambda c: c.items.append(1))
            await client.synced()
            await client.close()
        refused = await YClient.connect(server, f"{user}/d", token)
        assert await refused.closed() == 4413 and refused.ws.close_reason == "too many documents"
        again = await YClient.connect(server, f"{user}/a", token)  # an existing one still opens
        await again.synced()
        assert list(again.items) == [1]
        await again.close()

    run(scenario())


def test_a_big_document_reloads_off_the_event_loop_from_a_compacted_history(site: Path, tmp_path: Path) -> None:
    """Before: a room's load merged its whole history and applied it on the event loop (a 150 MB
    document: 76 s frozen, 11.7 GB). Now its stored history is squashed as it grows and a load
    applies it on a worker thread, update by update."""
    server = Server(site, tmp_path / "data", WAYSTATION_BYTES_PER_SECOND="0",
                    WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS="100000").start()
    try:
        user, token = register(server)

        async def scenario() -> None:
            writer = await YClient.connect(server, f"{user}/big", token)
            await writer.synced()
            for i in range(24):  # 12 MB in 512 kB updates, as a paste or an import sends it
                await writer.edit(lambda c, i=i: c.text.insert(len(c.text), str(i % 10) * (512 * KIB)))
            await writer.synced()
            await writer.close()  # the room leaves memory
            await asyncio.sleep(0.5)
            control = await Control.start(server)
            began = time.monotonic()
            reader = await YClient.connect(server, f"{user}/big", token)
            await reader.synced()
            took = time.monotonic() - began
            assert len(str(reader.text)) == 24 * 512 * KIB
            assert took < 10 and await control.stop() < ROUND_TRIP_BOUND
            await reader.close()

        run(scenario())
    finally:
        server.stop()  # its shutdown waits for compactions under way
    # Squashed as it grew: what follows the last squash never outweighs it (nor 1 MiB), so a
    # load reads at most about twice the document, whatever the timing of the squashes.
    with Storage.at(tmp_path / "data").database("sync").transaction() as db:
        sizes = [n for (n,) in db.execute("SELECT length(data) FROM sync_updates ORDER BY id")]
    assert len(sizes) < 24 and sum(sizes[1:]) <= max(sizes[0], 1 << 20), sizes


def test_updates_whose_items_point_at_missing_items_are_charged_the_copy_they_force(site: Path, tmp_path: Path) -> None:
    """An item whose origin is another client's missing item shows only once applied, and taking
    it back out copies the document. Each such update is charged the document's size against
    its user's pace, so nobody can keep the event loop copying documents."""
    server = Server(site, tmp_path / "data", WAYSTATION_BYTES_PER_SECOND=str(256 * KIB),
                    WAYSTATION_MAX_MESSAGE_BYTES=str(64 * KIB), WAYSTATION_MESSAGES_PER_SECOND="0").start()
    try:
        user, token = register(server)

        async def scenario() -> None:
            writer = await YClient.connect(server, f"{user}/doc", token)
            await writer.synced()
            for i in range(4):  # a 240 KiB document
                await writer.edit(lambda c, i=i: c.text.insert(len(c.text), str(i) * (60 * KIB)))
            await writer.synced()
            await asyncio.sleep(4)  # the writer's bytes are paid back
            elsewhere = Doc()
            elsewhere.get("text", type=Text).insert(0, "x")  # a client the server never hears from
            control = await Control.start(server)
            attacker = await YClient.connect(server, f"{user}/doc", token)
            await attacker.synced()
            began = time.monotonic()
            for _ in range(8):
                doc = Doc()
                doc.apply_update(elsewhere.get_update())
                state = doc.get_state()
                doc.get("text", type=Text).insert(1, "y")  # its origin: the missing "x"
                await attacker.ws.send(create_update_message(doc.get_update(state)))
            await attacker.synced()
            # 8 copies of 240 KiB charged at 256 KiB a second, past a burst of 1 MiB: about 3.5 s
            # (uncharged, the 8 updates were taken in well under a second).
            assert time.monotonic() - began > 2.5
            assert attacker.ws.close_code is None and len(str(attacker.text)) == 240 * KIB  # held, not shown
            assert await control.stop() < ROUND_TRIP_BOUND
            await asyncio.gather(attacker.close(), writer.close())

        run(scenario())
    finally:
        server.stop()
