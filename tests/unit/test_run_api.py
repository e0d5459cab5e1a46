"""POST /api/run on a real `waystation serve`: the server as a second place to run a workflow.

Parity with `waystation run`'s native host (same results, same errors), the offload policy
enforced by the server, the user's synced documents as `ctx.state`, and every bound under
attack while a sync client's round trip stays quick.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from waystation.bundles.builder import build_bundle
from waystation.bundles.signing import dev_key
from waystation.cli import run_function
from waystation.device import App
from waystation.device._bridge import _error as bridge_error
from waystation.device.errors import WorkflowError
from waystation.device.workflow import export
from waystation.server.registry import Registry

from bundle_factory import make_bundle
from offload_bundles import offloadable
from server_process import ROOT, Server
from test_sync_server import YClient, register, until

# Seconds another user's sync round trip may take at worst during an attack: generous, as in the
# other attack tests (the machine is shared; an idle one measures tens of milliseconds).
SYNC_ROUND_TRIP_BOUND = 1.0
TIMEOUT = 3.0  # the test server's WAYSTATION_RUN_TIMEOUT: real calls take well under it, on a busy machine too

HYBRID = b'''
import asyncio
import time

from waystation.device import export

@export(offload="allowed")
def echo(ctx, n: int) -> dict:
    return {"twice": n * 2}

@export(offload="allowed")
async def slow(ctx, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"

@export(offload="allowed")
def block(ctx, seconds: float) -> str:
    time.sleep(seconds)  # holds its thread: no await to cancel at
    return "done"

@export(offload="allowed")
def boom(ctx) -> None:
    raise ValueError("boom: the workflow failed on purpose")

@export
def private(ctx, text: str) -> int:
    return len(text)

@export(offload="on-low-confidence", threshold=0.5)
def guess(ctx, x: float) -> dict:
    return {"value": x, "confidence": x}

@export(offload="allowed", writes_state=True)
def add_note(ctx, text: str) -> list:
    items = ctx.state("notes").list("items")
    items.append(text)
    return items.to_list()

@export(offload="allowed")
def read_notes(ctx) -> list:
    return ctx.state("notes").list("items").to_list()

@export(offload="allowed")
def sneaky_write(ctx, text: str) -> int:
    ctx.state("notes").list("items").append(text)
    return 1

@export(offload="allowed")
def not_a_number(ctx) -> float:
    return float("nan")

_seen = []  # a module-level cache, as workflows keep them: per user on the server, as per device

@export(offload="allowed")
def remember(ctx, text: str) -> list:
    _seen.append(text)
    return list(_seen)
'''


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("run-bundles")
    quiet = lambda _m: None  # noqa: E731
    return {
        "digits": offloadable(build_bundle(ROOT / "models" / "digits", root / "built", progress=quiet), root / "offload"),
        "minilm": offloadable(build_bundle(ROOT / "models" / "minilm", root / "built", progress=quiet), root / "offload"),
        "hybrid": make_bundle(root / "made", dev_key(), "hybrid", "1.0.0", body=HYBRID),
    }


@pytest.fixture(scope="module")
def server(site: Path, bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("run-data")
    registry = Registry(data)
    for folder in bundles.values():
        registry.publish(folder, "stable")
    srv = Server(site, data, WAYSTATION_RUN_TIMEOUT=str(TIMEOUT), WAYSTATION_RUN_WORKERS="2", WAYSTATION_RUN_QUEUE="2",
                 WAYSTATION_RUN_PER_USER="2", WAYSTATION_RUN_BODY_BYTES=str(256 << 10),
                 WAYSTATION_RUN_OPEN_APPS="2").start()  # three bundles: versions are closed and opened again
    yield srv
    srv.stop()


@pytest.fixture()
def token(server: Server) -> str:
    return register(server)[1]


def call(server: Server, token: str | None, path: str, args: object = None, **kwargs: object) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.post(f"{server.url}/api/run/{path}", json={"args": args}, headers=headers, timeout=30, **kwargs)


def native(bundle: Path, function: str, args: object) -> dict:
    """What `waystation run` answers, as the worker would reply it: {ok, result} or {ok: false, error}."""
    try:
        return {"ok": True, **asyncio.run(run_function(bundle, function, args))}
    except Exception as exc:
        return json.loads(bridge_error(exc))


def without_traceback(error: dict) -> dict:
    return {k: v for k, v in error.items() if k != "traceback"}


def revive(reply: dict) -> object:
    """The server's tensors as the page revives them: placeholders replaced by (dtype, shape, values)."""
    import array

    buffers = [base64.b64decode(b) for b in reply["tensors"]]

    def walk(value: object) -> object:
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            if "$tensor" in value:
                typed = array.array({"float32": "f", "int64": "q"}[value["dtype"]], buffers[value["$tensor"]])
                return {"dtype": value["dtype"], "shape": value["shape"], "data": typed.tolist()}
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(reply["result"])


def flat(rows: object) -> list[float]:
    return [x for row in rows for x in row] if isinstance(rows, list) and rows and isinstance(rows[0], list) else rows


def worst_sync_round_trip_while(server: Server, attack: list[threading.Thread]) -> float:
    """Start `attack`, round-trip edits of a sync client back to back until it ends: the slowest, in seconds."""

    async def probe() -> float:
        user, token = register(server)
        client = await YClient.connect(server, f"{user}/probe", token)
        await client.synced()
        for thread in attack:
            thread.start()
        worst, n = 0.0, 0
        while any(thread.is_alive() for thread in attack) or n == 0:
            start = time.perf_counter()
            await client.edit(lambda c, n=n: c.items.append(n))
            await client.synced()
            worst = max(worst, time.perf_counter() - start)
            n += 1
        for thread in attack:
            thread.join()
        await client.close()
        print(f"worst sync round trip during the attack: {worst * 1000:.0f} ms")
        return worst

    return asyncio.run(asyncio.wait_for(probe(), 60))


def threads(work: Callable[[], None], count: int) -> list[threading.Thread]:
    return [threading.Thread(target=work) for _ in range(count)]


# --- parity with `waystation run` ---


def test_digits_answers_as_waystation_run_does(server: Server, bundles: dict[str, Path], token: str) -> None:
    samples = native(bundles["digits"], "samples", {})["result"]
    features = {"features": [s["pixels"] for s in samples[:20]]}
    remote = call(server, token, "digits/1.0.0/classify_features", features)
    assert remote.status_code == 200, remote.text
    assert remote.json()["ranOn"] == "server"
    assert remote.json()["result"] == native(bundles["digits"], "classify_features", features)["result"]

    tensor = call(server, token, "digits/1.0.0/probabilities", features).json()
    revived = revive(tensor)
    assert revived["dtype"] == "float32" and revived["shape"] == [20, 10]
    assert revived["data"] == flat(native(bundles["digits"], "probabilities", features)["result"])


@pytest.mark.parametrize("function, args, status", [
    ("classify_features", {"features": [[1.0, 2.0]]}, 500),          # the workflow's own ValueError
    ("classify_features", {"features": "not a list"}, 400),          # the argument checker's
    ("classify_features", {"pixels": []}, 400),                      # an unknown argument
    ("classify", {"pixels": [0.0] * 4, "width": 2, "height": 2}, 500),  # a blank image
    ("no_such_function", {}, 404),
])
def test_errors_are_those_of_waystation_run(server: Server, bundles: dict[str, Path], token: str,
                                            function: str, args: dict, status: int) -> None:
    remote = call(server, token, f"digits/1.0.0/{function}", args)
    assert remote.status_code == status, remote.text
    local = native(bundles["digits"], function, args)
    assert remote.json()["ok"] is False and local["ok"] is False
    assert without_traceback(remote.json()["error"]) == without_traceback(local["error"])


def test_minilm_embeddings_match_the_native_run(server: Server, bundles: dict[str, Path], token: str) -> None:
    texts = {"texts": ["The quick brown fox.", "Offline-first inference on the device.", "ünïcödé ✓"]}
    remote = call(server, token, "minilm/1.0.0/embed", texts)
    assert remote.status_code == 200, remote.text
    got = revive(remote.json())
    local = native(bundles["minilm"], "embed", texts)["result"]
    assert got["embeddings"]["shape"] == [3, 384]
    expected = flat(local["embeddings"])
    assert max(abs(a - b) for a, b in zip(got["embeddings"]["data"], expected, strict=True)) < 1e-4
    assert (got["truncated"], got["tokens"]) == (local["truncated"], local["tokens"])


# --- the policy, declared in the workflow ---


def test_a_never_function_is_refused_with_403(server: Server, token: str) -> None:
    response = call(server, token, "hybrid/1.0.0/private", {"text": "my diary"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "offload-refused"
    assert "never" in response.json()["error"]["message"]


def test_describe_tells_each_functions_policy(bundles: dict[str, Path]) -> None:
    app = asyncio.run(App.open(bundles["hybrid"]))
    try:
        offload = app.describe()["offload"]
    finally:
        app.close()
    assert offload["private"] == {"offload": "never", "writes_state": False}
    assert offload["echo"] == {"offload": "allowed", "writes_state": False}
    assert offload["add_note"] == {"offload": "allowed", "writes_state": True}
    assert offload["guess"] == {"offload": "on-low-confidence", "writes_state": False, "threshold": 0.5,
                                "confidence": "confidence"}


def test_the_server_describes_a_version_as_the_device_does(server: Server, bundles: dict[str, Path], token: str) -> None:
    response = httpx.get(f"{server.url}/api/run/hybrid/1.0.0", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    app = asyncio.run(App.open(bundles["hybrid"]))
    try:
        local = app.describe()
    finally:
        app.close()
    assert response.json() == {key: local[key] for key in ("name", "version", "functions", "offload")}
    assert httpx.get(f"{server.url}/api/run/hybrid/1.0.0").status_code == 401
    assert httpx.get(f"{server.url}/api/run/hybrid/0.0.1", headers={"Authorization": f"Bearer {token}"}).status_code == 404


@pytest.mark.parametrize("options, message", [
    ({"offload": "sometimes"}, "is not one of never, allowed, on-low-confidence"),
    ({"offload": "on-low-confidence"}, "needs threshold="),
    ({"offload": "on-low-confidence", "threshold": 1.5}, "needs threshold="),
    ({"offload": "allowed", "threshold": 0.5}, "only goes with offload='on-low-confidence'"),
    ({"writes_state": True}, "writes_state=True needs an offload policy"),
])
def test_a_malformed_policy_fails_where_it_is_declared(options: dict, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        export(**options)


# --- state: the user's synced documents ---


def test_a_writing_function_edits_the_users_document_and_devices_see_it(server: Server) -> None:
    user, token = register(server)

    async def scenario() -> None:
        device = await YClient.connect(server, f"{user}/notes", token)
        await device.synced()
        await device.edit(lambda c: c.items.append("from the device"))
        await device.synced()
        read = await asyncio.to_thread(call, server, token, "hybrid/1.0.0/read_notes", {})
        assert read.json()["result"] == ["from the device"]
        added = await asyncio.to_thread(call, server, token, "hybrid/1.0.0/add_note", {"text": "from the server"})
        assert added.status_code == 200, added.text
        assert added.json()["result"] == ["from the device", "from the server"]
        await until(lambda: list(device.items) == ["from the device", "from the server"])
        await device.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    # Stored, not only relayed: a fresh read (another room load) finds it.
    assert call(server, token, "hybrid/1.0.0/read_notes", {}).json()["result"] == ["from the device", "from the server"]
    # Another user's notes are their own.
    other = register(server)[1]
    assert call(server, other, "hybrid/1.0.0/read_notes", {}).json()["result"] == []


def test_a_read_only_function_that_writes_fails_and_changes_nothing(server: Server, token: str) -> None:
    response = call(server, token, "hybrid/1.0.0/sneaky_write", {"text": "should not stay"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert "writes_state=True" in error["message"] and "StateError" in json.dumps(error)
    assert call(server, token, "hybrid/1.0.0/read_notes", {}).json()["result"] == []


def test_each_user_has_the_workflow_module_to_themselves(server: Server) -> None:
    ada, bob = register(server)[1], register(server)[1]
    assert call(server, ada, "hybrid/1.0.0/remember", {"text": "ada's secret"}).json()["result"] == ["ada's secret"]
    assert call(server, bob, "hybrid/1.0.0/remember", {"text": "bob's"}).json()["result"] == ["bob's"]
    assert call(server, ada, "hybrid/1.0.0/remember", {"text": "again"}).json()["result"] == ["ada's secret", "again"]


def test_versions_past_the_open_limit_are_closed_and_opened_again(server: Server, token: str) -> None:
    for path, args in [("digits/1.0.0/samples", {}), ("minilm/1.0.0/embed", {"texts": ["a"]}),
                       ("hybrid/1.0.0/echo", {"n": 1}), ("digits/1.0.0/samples", {}), ("hybrid/1.0.0/echo", {"n": 2})]:
        response = call(server, token, path, args)
        assert response.status_code == 200, (path, response.text)
    assert response.json()["result"] == {"twice": 4}


# --- attacks, each while a sync client round-trips ---


def test_unauthenticated_calls_are_refused_with_401(server: Server) -> None:
    answers: list[int] = []

    def attack() -> None:
        for token in (None, "not-a-token", "x" * 64) * 10:
            answers.append(call(server, token, "hybrid/1.0.0/echo", {"n": 1}).status_code)

    assert worst_sync_round_trip_while(server, threads(attack, 2)) < SYNC_ROUND_TRIP_BOUND
    assert set(answers) == {401}
    refused = call(server, None, "hybrid/1.0.0/echo", {"n": 1})
    assert refused.json()["error"]["code"] == "unauthorized"


def test_an_oversized_body_is_refused_with_413(server: Server, token: str) -> None:
    answers: list[int] = []
    big = json.dumps({"args": {"features": [[0.0] * 64] * 8000}}).encode()  # 1.6 MB, past the test server's 256 KiB
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def attack() -> None:
        for _ in range(5):
            response = httpx.post(f"{server.url}/api/run/digits/1.0.0/classify_features", content=big, headers=headers)
            answers.append(response.status_code)

    assert worst_sync_round_trip_while(server, threads(attack, 2)) < SYNC_ROUND_TRIP_BOUND
    assert set(answers) == {413}
    assert call(server, token, "hybrid/1.0.0/echo", {"n": 21}).json()["result"] == {"twice": 42}


@pytest.mark.parametrize("function", ["slow", "block"])
def test_a_call_past_its_time_answers_504_and_the_next_works(server: Server, function: str) -> None:
    token = register(server)[1]
    answers: list[tuple[int, float, str]] = []

    def attack() -> None:
        start = time.perf_counter()
        response = call(server, token, f"hybrid/1.0.0/{function}", {"seconds": TIMEOUT + 2})
        answers.append((response.status_code, time.perf_counter() - start, response.json()["error"]["code"]))

    assert worst_sync_round_trip_while(server, threads(attack, 1)) < SYNC_ROUND_TRIP_BOUND
    [(status, seconds, code)] = answers
    assert (status, code) == (504, "timeout")
    assert TIMEOUT <= seconds < TIMEOUT + 1.5  # answered at the limit, not when the call ends
    start = time.perf_counter()
    assert call(server, token, "hybrid/1.0.0/echo", {"n": 2}).json()["result"] == {"twice": 4}
    assert time.perf_counter() - start < 2  # not queued behind the call still sleeping
    time.sleep(2.5)  # let a blocked thread finish before the next test counts on its threads


def test_too_many_calls_of_one_user_get_429(server: Server, token: str) -> None:
    answers: list[httpx.Response] = []

    def attack() -> None:
        answers.append(call(server, token, "hybrid/1.0.0/slow", {"seconds": TIMEOUT / 2}))

    assert worst_sync_round_trip_while(server, threads(attack, 6)) < SYNC_ROUND_TRIP_BOUND
    statuses = sorted(r.status_code for r in answers)
    assert 429 in statuses and 200 in statuses, statuses
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate-limited" and int(refused.headers["Retry-After"]) >= 1


def test_too_many_calls_in_all_get_503(server: Server) -> None:
    tokens = [register(server)[1] for _ in range(8)]
    answers: list[httpx.Response] = []

    def attack(token: str) -> Callable[[], None]:
        return lambda: answers.append(call(server, token, "hybrid/1.0.0/slow", {"seconds": TIMEOUT / 3}))

    attackers = [threading.Thread(target=attack(t)) for t in tokens]
    assert worst_sync_round_trip_while(server, attackers) < SYNC_ROUND_TRIP_BOUND
    statuses = sorted(r.status_code for r in answers)
    assert 503 in statuses and 200 in statuses, statuses
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.json()["error"]["code"] == "server-busy" and int(busy.headers["Retry-After"]) >= 1


def test_an_exception_inside_the_workflow_is_its_error(server: Server, bundles: dict[str, Path], token: str) -> None:
    answers: list[httpx.Response] = []

    def attack() -> None:
        for _ in range(5):
            answers.append(call(server, token, "hybrid/1.0.0/boom", {}))

    assert worst_sync_round_trip_while(server, threads(attack, 2)) < SYNC_ROUND_TRIP_BOUND
    assert {r.status_code for r in answers} == {500}
    local = native(bundles["hybrid"], "boom", {})
    assert without_traceback(answers[0].json()["error"]) == without_traceback(local["error"])
    assert "boom: the workflow failed on purpose" in answers[0].json()["error"]["traceback"]


def test_a_result_that_is_not_json_is_the_functions_error(server: Server, token: str) -> None:
    response = call(server, token, "hybrid/1.0.0/not_a_number", {})
    assert response.status_code == 500
    assert "the result is not JSON" in response.json()["error"]["message"]


def test_a_version_not_published_is_a_404(server: Server, token: str) -> None:
    answers: list[httpx.Response] = []

    def attack() -> None:
        for path in ("hybrid/9.9.9/echo", "nobody/1.0.0/echo") * 5:
            answers.append(call(server, token, path, {"n": 1}))

    assert worst_sync_round_trip_while(server, threads(attack, 2)) < SYNC_ROUND_TRIP_BOUND
    assert {r.status_code for r in answers} == {404}
    assert answers[0].json()["error"] == {"code": "not-found", "type": "not-found",
                                          "message": "hybrid 9.9.9 is not published on this server"}
    assert call(server, token, "hybrid/1.0.0/echo", {"n": 5}).json()["result"] == {"twice": 10}


def test_malformed_requests_are_400(server: Server, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    bad_json = httpx.post(f"{server.url}/api/run/hybrid/1.0.0/echo", content=b"{nope", headers=headers)
    assert bad_json.status_code == 400 and "not JSON" in bad_json.json()["error"]["message"]
    extra = httpx.post(f"{server.url}/api/run/hybrid/1.0.0/echo", json={"args": {}, "more": 1}, headers=headers)
    assert extra.status_code == 400 and "'more'" in extra.json()["error"]["message"]
    assert httpx.get(f"{server.url}/api/run/hybrid/1.0.0/echo", headers=headers).status_code in (404, 405)  # runs nothing
