"""The sync server's promise: an edit a client has seen acknowledged (a sync step 2 answering a
step 1 sent after it) is on disk, so it survives the server being killed (SIGKILL) at any moment."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import websockets
from hypothesis import given, settings
from hypothesis import strategies as st

from server_process import Server
from test_sync_server import YClient, register, until

ENV = {"WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS": "100000", "WAYSTATION_MESSAGES_PER_SECOND": "0"}


def kill(server: Server) -> None:
    assert server.process is not None
    server.process.kill()
    server.process.wait(timeout=10)


async def stream(server: Server, room: str, token: str, start: int, acknowledged: list[int], ack_every: int) -> None:
    """Append start, start+1, ... until the connection dies; after every `ack_every` edits ask for
    an acknowledgement and record what it covers."""
    client = await YClient.connect(server, room, token)
    await client.synced()
    sent = []
    with contextlib.suppress(websockets.ConnectionClosed, AssertionError):
        for value in range(start, start + 100_000):
            await client.edit(lambda c, v=value: c.items.append(v))
            sent.append(value)
            if len(sent) % ack_every == 0:
                covered = list(sent)
                await client.send_step1()
                await until(lambda: client.step2_received >= client.step1_sent or client.ws.close_code is not None, 5)
                if client.step2_received >= client.step1_sent:
                    acknowledged[:] = sorted(set(acknowledged) | set(covered))


async def contents(server: Server, room: str, token: str) -> list[object]:
    client = await YClient.connect(server, room, token)
    await client.synced()
    items = list(client.items)
    await client.close()
    return items


def test_sigkill_at_random_moments_loses_no_acknowledged_edit(site: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = random.Random(7)
    server = Server(site, data, **ENV).start()
    user, token = register(server)
    room = f"{user}/log"
    acknowledged: list[int] = []
    for round in range(4):

        async def session(server: Server, round: int) -> None:
            writer = asyncio.create_task(stream(server, room, token, round * 100_000, acknowledged, rng.choice([1, 5, 20])))
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            kill(server)  # no shutdown, no flush: only what was committed survives
            await asyncio.wait_for(writer, 10)

        before = len(acknowledged)
        asyncio.run(session(server, round))
        assert len(acknowledged) > before  # the kill came while edits were being acknowledged
        server = Server(site, data, **ENV).start()
        kept = asyncio.run(contents(server, room, token))
        assert set(acknowledged) <= set(kept)
    server.stop()


step = st.one_of(
    st.tuples(st.just("edits"), st.integers(1, 30)),
    st.tuples(st.just("ack"), st.just(0)),
    st.tuples(st.just("kill"), st.floats(0, 0.05)),
)


@settings(max_examples=6, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_no_sequence_of_edits_acknowledgements_and_kills_loses_an_acknowledged_edit(site: Path, tmp_path_factory, steps) -> None:
    data = tmp_path_factory.mktemp("prop-data")
    server = Server(site, data, **ENV).start()
    user, token = register(server)
    room = f"{user}/prop"
    acknowledged: set[int] = set()
    counter = 0

    async def run_steps(server: Server) -> list[tuple[str, float]]:
        nonlocal counter
        client = await YClient.connect(server, room, token)
        await client.synced()
        sent: list[int] = []
        for i, (kind, arg) in enumerate(steps_left):
            if kind == "edits":
                for _ in range(int(arg)):
                    counter += 1
                    await client.edit(lambda c, v=counter: c.items.append(v))
                    sent.append(counter)
            elif kind == "ack":
                await client.synced()
                acknowledged.update(sent)
            else:
                await asyncio.sleep(arg)
                kill(server)
                with contextlib.suppress(Exception):
                    await client.closed()
                return steps_left[i + 1 :]
        await client.close()
        return []

    steps_left = list(steps)
    try:
        while True:
            steps_left = asyncio.run(asyncio.wait_for(run_steps(server), 30))
            if server.process is not None and server.process.poll() is not None:
                server = Server(site, data, **ENV).start()
            kept = asyncio.run(contents(server, room, token))
            assert acknowledged <= set(kept)
            if not steps_left:
                break
    finally:
        server.stop()
