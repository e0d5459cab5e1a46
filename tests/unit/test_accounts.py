"""Accounts on the sync server (`waystation serve` on 127.0.0.1, small limits through its env):
canonical names, the password policy, strict JSON, throttling, scrypt off the socket checks'
thread pool, token renewal/revocation/expiry closing open sockets, and sockets per user.

Other client addresses are other loopback addresses (127.0.0.2, ...), which Linux routes
to the server on 127.0.0.1 like any local address."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from waystation.server.storage import Storage
from waystation.server.sync import AccountError, Accounts

from server_process import Server
from test_sync_server import PASSWORD, YClient, assert_still_syncing, run

FAST = {"WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS": "100000"}  # this module logs in often from 127.0.0.1


def new_name(prefix: str = "acct") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def post(server: Server, route: str, *, token: str | None = None, address: str | None = None,
         **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=address) if address else None
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.post(f"{server.url}/api/sync/{route}", headers=headers, **kwargs)  # type: ignore[arg-type]


def register(server: Server, user: str | None = None, password: str = PASSWORD) -> dict[str, object]:
    response = post(server, "register", json={"user": user or new_name(), "password": password})
    assert response.status_code == 201, response.text
    return dict(response.json())


@contextmanager
def started(site: Path, tmp: pytest.TempPathFactory, **env: str) -> Iterator[Server]:
    server = Server(site, tmp.mktemp("accounts-data"), **{**FAST, **env}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with started(site, tmp_path_factory, WAYSTATION_SOCKETS_PER_USER="3") as server:
        yield server


def refused(response: httpx.Response, status: int, *words: str) -> str:
    """Assert a JSON refusal with `status` whose message holds each of `words`; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for word in words:
        assert word in message, message
    return str(message)


# --- names and passwords ---


def test_user_names_are_case_insensitive_and_returned_canonical(server: Server) -> None:
    name = new_name("Ada")
    account = register(server, name.upper())
    assert account["user"] == name.lower()
    refused(post(server, "register", json={"user": name.capitalize(), "password": PASSWORD}), 409, "exists")
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in name)  # ＡＤＡ-... NFKC-folds to ada-...
    for spelling in (name.lower(), name.swapcase(), fullwidth):
        login = post(server, "login", json={"user": spelling, "password": PASSWORD})
        assert login.status_code == 200 and login.json()["user"] == name.lower(), login.text
    refused(post(server, "register", json={"user": "a/b", "password": PASSWORD}), 400, "letters")
    token = str(account["token"])

    async def scenario() -> None:  # a room named in another case is the same room
        upper = await YClient.connect(server, f"{name.upper()}/doc", token)
        lower = await YClient.connect(server, f"{name.lower()}/doc", token)
        await asyncio.gather(upper.synced(), lower.synced())
        await assert_still_syncing(upper, lower, "one room")
        await asyncio.gather(upper.close(), lower.close())

    run(scenario())


def test_a_row_stored_with_capitals_before_keeps_its_name_and_documents(site: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    Server(site, data, **FAST).start().stop()  # creates the tables
    salt = os.urandom(16)
    hashed = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32, maxmem=64 << 20)
    with Storage.at(data).database("sync").transaction() as db:
        db.execute("INSERT INTO sync_users VALUES ('Legacy', ?, ?, 'n=16384,r=8,p=1', 0)", (salt, hashed))
    server = Server(site, data, **FAST).start()
    try:
        login = post(server, "login", json={"user": "LEGACY", "password": PASSWORD})
        assert login.status_code == 200 and login.json()["user"] == "Legacy", login.text
        refused(post(server, "register", json={"user": "legacy", "password": PASSWORD}), 409, "exists")
        token = login.json()["token"]

        async def scenario() -> None:
            a = await YClient.connect(server, "legacy/notes", token)
            b = await YClient.connect(server, "Legacy/notes", token)
            await asyncio.gather(a.synced(), b.synced())
            await assert_still_syncing(a, b, "same room")
            await asyncio.gather(a.close(), b.close())

        run(scenario())
    finally:
        server.stop()
    with Storage.at(data).database("sync").transaction() as db:  # documents stay under the stored spelling
        assert {row[0] for row in db.execute("SELECT DISTINCT room FROM sync_updates")} == {"Legacy/notes"}


@pytest.mark.parametrize(("password", "words"), [
    ("password", ["most common"]),
    ("Password1", ["most common"]),
    ("iloveyou", ["most common"]),
    ("short", ["at least 8"]),
    ("{user}", ["user name"]),
])
def test_weak_passwords_are_refused_saying_what_would_pass(server: Server, password: str, words: list[str]) -> None:
    user = new_name("weak")
    body = {"user": user, "password": password.format(user=user.upper())}
    refused(post(server, "register", json=body), 400, *words, "a few unrelated words")
    assert post(server, "login", json={"user": user, "password": PASSWORD}).status_code == 401  # not created


ODD_BODIES = {  # name: (body, what the message says)
    "deep nesting": (b'{"user": ' + b"[" * 5000 + b"]" * 5000 + b', "password": "x"}', "nests deeper than 32"),
    "5,000-digit number": (b'{"user": "u", "password": ' + b"9" * 5000 + b"}", "5000 characters"),
    "lone surrogate": (b'{"user": "u", "password": "abc\\ud800defgh"}', "lone surrogate"),
    "not an object": (b'["user", "password"]', "must be a JSON object"),
    "wrong types": (b'{"user": 1, "password": ["x"]}', "must be a string, not a number"),
    "malformed": (b'{"user": "u", "password":', "not JSON"),
    "not UTF-8": (b'{"user": "\xff\xfe", "password": "x"}', "not UTF-8"),
    "NaN": (b'{"user": "u", "password": NaN}', "NaN is not a JSON number"),
    "missing password": (b'{"user": "u"}', "must have"),
    "duplicate key": (b'{"user": "u", "user": "v", "password": "correct horse battery"}', "appears twice"),
    "empty": (b"", "not JSON"),
}


@pytest.mark.parametrize("route", ["register", "login", "password"])
@pytest.mark.parametrize(("body", "says"), ODD_BODIES.values(), ids=ODD_BODIES.keys())
def test_odd_json_bodies_are_a_400_with_a_message(server: Server, route: str, body: bytes, says: str) -> None:
    token = str(register(server)["token"]) if route == "password" else None
    if route == "password":
        body = body.replace(b'"user"', b'"old"').replace(b'"password"', b'"new"')
    refused(post(server, route, content=body, token=token), 400, says)


# --- throttling ---


@pytest.fixture(scope="module")
def throttled(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with started(site, tmp_path_factory, WAYSTATION_LOGIN_PER_MINUTE_PER_ADDRESS="6",
                 WAYSTATION_LOGIN_FREE_FAILURES="2", WAYSTATION_LOGIN_MAX_DELAY="2") as server:
        yield server


def test_wrong_passwords_delay_the_account_up_to_the_cap_never_locking_it(throttled: Server) -> None:
    user = str(register(throttled)["user"])
    right, wrong = {"user": user, "password": PASSWORD}, {"user": user, "password": "wrong guess!"}
    assert post(throttled, "login", json=right, address="127.0.0.4").status_code == 200  # the owner's usual address
    attacker = "127.0.0.2"
    for _ in range(3):  # 2 free failures, then each one makes the next try wait (1 s, 2 s, capped at 2 s)
        assert post(throttled, "login", json=wrong, address=attacker).status_code == 401
    response = post(throttled, "login", json=wrong, address=attacker)
    refused(response, 429, "too many wrong passwords", "wait")
    assert response.headers["Retry-After"] == "1"
    time.sleep(1.1)
    assert post(throttled, "login", json=wrong, address=attacker).status_code == 401  # now waits 2 s: the cap

    # The owner on a new address waits at most the cap, then the right password works.
    response = post(throttled, "login", json=right, address="127.0.0.3")
    refused(response, 429, "too many wrong passwords")
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= 2
    time.sleep(wait + 0.1)
    assert post(throttled, "login", json=right, address="127.0.0.3").status_code == 200
    # The owner's usual address never waited for the attacker's failures.
    for _ in range(3):
        assert post(throttled, "login", json=wrong, address=attacker).status_code in (401, 429)
    assert post(throttled, "login", json=right, address="127.0.0.4").status_code == 200


def test_an_address_past_its_budget_gets_429_and_others_do_not(throttled: Server) -> None:
    user = str(register(throttled)["user"])
    noisy, quiet = "127.0.0.5", "127.0.0.6"
    for i in range(6):  # 6 a minute, whatever the accounts
        body = {"user": f"{user}" if i % 2 else new_name(), "password": PASSWORD}
        assert post(throttled, "login", json=body, address=noisy).status_code in (200, 401)
    response = post(throttled, "login", json={"user": user, "password": PASSWORD}, address=noisy)
    refused(response, 429, "from this address", "6 a minute")
    assert 1 <= int(response.headers["Retry-After"]) <= 10
    assert post(throttled, "login", json={"user": user, "password": PASSWORD}, address=quiet).status_code == 200


# --- hashing apart from the socket checks ---


def test_a_login_storm_does_not_slow_sockets(site: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with started(site, tmp_path_factory, WAYSTATION_PASSWORD_HASH_WORKERS="1",
                 WAYSTATION_PASSWORD_HASH_QUEUE="128") as server:
        user, token = (lambda a: (str(a["user"]), str(a["token"])))(register(server))
        n, bound = 100, 1.0  # the old code: 2.9 s round trips, 1.2 s admissions (bench/login_storm.py)

        async def scenario() -> None:
            control = await YClient.connect(server, f"{user}/control", token)
            await control.synced()
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as http:
                started = time.monotonic()
                storm = asyncio.gather(*(http.post(f"{server.url}/api/sync/login",
                                                   json={"user": user, "password": PASSWORD}) for _ in range(n)))
                round_trips, admissions = [], []
                await asyncio.sleep(0.2)  # the hashing thread is busy and the queue full
                while not storm.done():
                    t = time.monotonic()
                    await control.synced()
                    round_trips.append(time.monotonic() - t)
                    t = time.monotonic()
                    fresh = await YClient.connect(server, f"{user}/fresh", token)
                    await fresh.synced()
                    admissions.append(time.monotonic() - t)
                    await fresh.close()
                    await asyncio.sleep(0.05)
                responses = await storm
                storm_seconds = time.monotonic() - started
            assert [r.status_code for r in responses] == [200] * n
            assert storm_seconds > 4 * bound, f"the storm took {storm_seconds:.2f} s: too short to show anything"
            assert len(round_trips) >= 3
            assert max(round_trips) < bound, f"control round trips during {storm_seconds:.1f} s of logins: {round_trips}"
            assert max(admissions) < bound, f"new sockets during {storm_seconds:.1f} s of logins: {admissions}"
            print(f"{n} logins in {storm_seconds:.2f} s; control round trip max {max(round_trips) * 1000:.0f} ms, "
                  f"new socket max {max(admissions) * 1000:.0f} ms over {len(admissions)} tries")
            await control.close()

        run(scenario())


def test_past_the_hash_queue_logins_get_503_busy(site: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with started(site, tmp_path_factory, WAYSTATION_PASSWORD_HASH_WORKERS="1",
                 WAYSTATION_PASSWORD_HASH_QUEUE="4") as server:
        user = str(register(server)["user"])

        async def scenario() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=30)) as http:
                return await asyncio.gather(*(http.post(f"{server.url}/api/sync/login",
                                                        json={"user": user, "password": PASSWORD}) for _ in range(30)))

        responses = asyncio.run(scenario())
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) >= 5 and statuses.count(503) >= 1 and set(statuses) == {200, 503}, statuses
        busy = next(r for r in responses if r.status_code == 503)
        refused(busy, 503, "busy")
        assert int(busy.headers["Retry-After"]) >= 1
        assert post(server, "login", json={"user": user, "password": PASSWORD}).status_code == 200  # and after


# --- tokens ---


def test_renewal_hands_out_a_new_token_and_keeps_the_open_socket(server: Server) -> None:
    account = register(server)
    user, old = str(account["user"]), str(account["token"])
    assert 167.9 * 3600 < float(account["expires_at"]) - float(account["issued_at"]) <= 168 * 3600  # token_hours

    async def scenario() -> None:
        socket = await YClient.connect(server, f"{user}/doc", old)
        await socket.synced()
        renewed = post(server, "renew", token=old)
        assert renewed.status_code == 200 and renewed.json()["user"] == user, renewed.text
        new = renewed.json()["token"]
        assert new != old
        await socket.synced()  # still open, now under the new token
        assert post(server, "logout", token=new).status_code == 200
        assert await socket.closed() == 4401  # it went with the new token
        refused(post(server, "renew", token=new), 401, "log in again")

    run(scenario())


def test_logout_closes_the_open_socket_with_4401_and_the_token_stops_working(server: Server) -> None:
    user, token = (lambda a: (str(a["user"]), str(a["token"])))(register(server))
    other, other_token = (lambda a: (str(a["user"]), str(a["token"])))(register(server))
    refused(post(server, "logout"), 401, "Authorization: Bearer")

    async def scenario() -> None:
        mine = await YClient.connect(server, f"{user}/doc", token)
        a = await YClient.connect(server, f"{other}/doc", other_token)
        b = await YClient.connect(server, f"{other}/doc", other_token)
        await asyncio.gather(mine.synced(), a.synced(), b.synced())
        t = time.monotonic()
        response = post(server, "logout", token=token)
        assert response.status_code == 200 and response.json() == {"revoked": 1}
        assert await mine.closed() == 4401
        assert time.monotonic() - t < 2
        again = await YClient.connect(server, f"{user}/doc", token)
        assert await again.closed() == 4401
        await assert_still_syncing(a, b, "unaffected")
        await asyncio.gather(a.close(), b.close())

    run(scenario())
    refused(post(server, "logout", token=token), 401, "revoked")


def test_logout_all_revokes_every_token_of_the_user(server: Server) -> None:
    user = str(register(server)["user"])
    tokens = [post(server, "login", json={"user": user, "password": PASSWORD}).json()["token"] for _ in range(2)]

    async def scenario() -> None:
        sockets = [await YClient.connect(server, f"{user}/doc", token) for token in tokens]
        await asyncio.gather(*(s.synced() for s in sockets))
        response = post(server, "logout-all", token=tokens[0])
        assert response.status_code == 200 and response.json()["revoked"] == 3  # register's token too
        assert [await s.closed() for s in sockets] == [4401, 4401]
        for token in tokens:
            assert await (await YClient.connect(server, f"{user}/doc", token)).closed() == 4401

    run(scenario())


def test_password_change_revokes_every_other_token_and_returns_a_new_one(server: Server) -> None:
    user, here = (lambda a: (str(a["user"]), str(a["token"])))(register(server))
    elsewhere = post(server, "login", json={"user": user, "password": PASSWORD}).json()["token"]
    new_password = "a brand new passphrase"
    refused(post(server, "password", token=here, json={"old": "wrong one!", "new": new_password}), 401, "wrong")
    refused(post(server, "password", token=here, json={"old": PASSWORD, "new": "password"}), 400, "common")

    async def scenario() -> None:
        mine = await YClient.connect(server, f"{user}/doc", here)
        theirs = await YClient.connect(server, f"{user}/doc", elsewhere)
        await asyncio.gather(mine.synced(), theirs.synced())
        changed = post(server, "password", token=here, json={"old": PASSWORD, "new": new_password})
        assert changed.status_code == 200 and changed.json()["user"] == user, changed.text
        assert await theirs.closed() == 4401
        await mine.synced()  # this device's socket moved to the new token
        await mine.close()
        for token in (here, elsewhere):
            assert await (await YClient.connect(server, f"{user}/doc", token)).closed() == 4401
        fresh = await YClient.connect(server, f"{user}/doc", changed.json()["token"])
        await fresh.synced()
        await fresh.close()

    run(scenario())
    assert post(server, "login", json={"user": user, "password": PASSWORD}).status_code == 401
    assert post(server, "login", json={"user": user, "password": new_password}).status_code == 200


def test_an_expired_token_closes_its_socket(site: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with started(site, tmp_path_factory, WAYSTATION_TOKEN_HOURS="0.001") as server:  # tokens live 3.6 s
        account = register(server)
        user, token = str(account["user"]), str(account["token"])
        assert float(account["expires_at"]) - float(account["issued_at"]) == pytest.approx(3.6)

        async def scenario() -> None:
            socket = await YClient.connect(server, f"{user}/doc", token)
            await socket.synced()
            code = await asyncio.wait_for(socket.closed(), 10)
            assert code == 4401 and time.time() >= float(account["expires_at"]) - 0.1
            assert await (await YClient.connect(server, f"{user}/doc", token)).closed() == 4401

        run(scenario())
        refused(post(server, "renew", token=token), 401, "expired")


# --- sockets per user ---


def test_sockets_past_the_per_user_limit_are_closed_with_4429(server: Server) -> None:
    user, token = (lambda a: (str(a["user"]), str(a["token"])))(register(server))
    other, other_token = (lambda a: (str(a["user"]), str(a["token"])))(register(server))

    async def scenario() -> None:
        sockets = [await YClient.connect(server, f"{user}/doc{i}", token) for i in range(3)]
        await asyncio.gather(*(s.synced() for s in sockets))
        extra = await YClient.connect(server, f"{user}/doc9", token)
        assert await extra.closed() == 4429
        assert extra.ws.close_reason == "too many sockets"
        assert extra.received[0][0] == 2 and b"3 sync sockets open already" in extra.received[0]
        theirs = await YClient.connect(server, f"{other}/doc", other_token)  # another user is not counted
        await theirs.synced()
        await sockets[0].close()
        replacement = await YClient.connect(server, f"{user}/doc0", token)
        for _ in range(20):  # a closed one frees its place once the server has seen it go
            if replacement.ws.close_code != 4429:
                break
            await asyncio.sleep(0.1)
            replacement = await YClient.connect(server, f"{user}/doc0", token)
        await replacement.synced()
        await asyncio.gather(theirs.close(), replacement.close(), *(s.close() for s in sockets[1:]))

    run(scenario())


# --- several server instances on one database ---


def instances(data: Path) -> tuple[Accounts, Accounts]:
    """Accounts of two instances sharing `data`'s database (two Storages, one URL or file)."""
    url = Storage.at(data).url
    return Accounts(Storage(data, url)), Accounts(Storage(data, url))


def test_one_name_registered_on_two_instances_at_once_is_one_account(tmp_path: Path) -> None:
    """Both pass the early check, hash, then insert: the primary key lets one in, the other is a 409."""
    a, b = instances(tmp_path)
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def register_on(accounts: Accounts) -> None:
        start.wait()
        try:
            outcomes.append(accounts.register("Twice", PASSWORD).user)
        except AccountError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=register_on, args=(accounts,)) for accounts in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, outcomes)) == ["409", "twice"]
    with pytest.raises(AccountError) as again:
        b.register("TWICE", PASSWORD)
    assert again.value.status == 409


def test_tokens_renewed_and_revoked_on_one_instance_are_so_on_the_other(tmp_path: Path) -> None:
    a, b = instances(tmp_path)
    first = a.register("roaming", PASSWORD)
    second = b.login("Roaming", PASSWORD)
    assert b.user_for(first.token) == a.user_for(second.token) == "roaming"
    old, renewed = b.renew(first.token)
    assert a.user_for(renewed.token) == "roaming"
    assert (a.session_for(first.token) or old).expires_at <= time.time() + 60  # a minute's grace, everywhere
    _, count = a.logout_all(second.token)
    assert count == 3 and b.user_for(renewed.token) is None and b.user_for(first.token) is None
