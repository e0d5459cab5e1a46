"""Running workflow functions on the server: the second place a page's call can be answered.

    POST /api/run/{bundle}/{version}/{function}     Authorization: Bearer TOKEN
    {"args": {...}}                                   named arguments (or an array of positional ones)
    GET  /api/run/{bundle}/{version}                 {name, version, functions, offload}: what the
                                                      server can answer for a page still installing it

runs the function of that exact published version (the registry under --data) on CPython
with onnxruntime, as `waystation run` does, and answers as the worker answers the page:

    200 {"ok": true, "result": ..., "metrics": {...}, "ms": 12.3, "ranOn": "server", "tensors": ["<base64>", ...]}
    4xx/5xx {"ok": false, "error": {"code": ..., "message": ..., ...}}

A tensor in the result is the worker's placeholder `{"$tensor": i, "dtype": ..., "shape": [...]}`
and its bytes are `tensors[i]`, base64 of the typed array's little-endian bytes: the page revives
both replies with one function, to the same `{dtype, shape, data: TypedArray}`. An error is
`_bridge._error`'s, the very reply the worker gives, so the page sees the same code and message
for a bad argument wherever the call ran.

Each user gets the version's workflow module imported for them alone, over the models every user
shares: a workflow's module-level caches (MiniLM's embeddings of the user's notes) then hold one
user's data, as on that user's device, never another's. `ctx.events` and `ctx.features` are the
device's own tables: on the server they raise `DataError`.

Only a function whose workflow declares `@export(offload="allowed")` or `"on-low-confidence"`
runs here (the server cannot see the device's answer, so "only when unsure" is the page's rule);
"never" (the default) is refused with 403 `offload-refused` (the page never sends it either: the
policy is enforced at both ends).

Who may run: a signed-in user (a sync account token). A per-app key was the alternative; a key
shipped inside a page is public, so it would identify no one, and the limits and state below
need a user. The function's `ctx.state(name)` is that user's synced document `USER/name`, read
from its room; its writes are kept only for `@export(..., writes_state=True)`, applied through
the room as a device's update is (stored, then sent to the user's connected devices) once the
function has returned. A read-only function that writes fails with `state-error`, and a
function that fails leaves the documents as they were.

Bounds (settings in `config`, docs/server.md): the body (`RUN_BODY_BYTES`: 413), the time of a
call, waiting for a worker included (`RUN_TIMEOUT`: 504 `timeout`; the one load of a version,
and of its workflow for a user, is not counted), a user's calls at once (`RUN_PER_USER`:
429 + Retry-After), calls waiting for a thread (`RUN_QUEUE`: 503 + Retry-After), open bundle
versions kept warm (`RUN_OPEN_APPS`, least recently used closed first).

Why threads, not processes: onnxruntime releases the GIL while a model runs, so `RUN_WORKERS`
threads run that many models at once; every thread shares one loaded copy of each version's
models (a process each would hold its own), and the rooms a call reads and writes live in this
process. What threads cannot do is kill a call: a timed-out call that awaits (a model run, a
sleep) is cancelled at its next await, but one blocking in Python keeps its thread until it
returns. So there are twice `RUN_WORKERS` threads and only `RUN_WORKERS` calls may hold one
at a time: a timed-out call still running on its thread leaves the next call a thread, and
once every spare thread is held so, calls wait, then time out (504), and the event loop is
never involved: it only awaits.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import itertools
import json
import logging
import queue
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..device._bridge import _error as bridge_error
from ..device.data import find_hooks
from ..device.errors import DataError, StateError
from ..device.hosts.state_native import NativeStateDoc
from ..device.manifest import Manifest
from ..device.runtime import App
from ..device.state import DOC_NAME
from ..device.tensor import Tensor
from ..device.workflow import Workflow
from ._json import BadJSON, parse_object
from .config import ServerConfig, env_name
from .registry import Registry
from .sync.auth import Accounts
from .sync.client import Client
from .sync.limits import LimitExceeded
from .sync.protocol import encode_update
from .sync.rooms import Room, Rooms

__all__ = ["RunService", "run_routes"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_EMPTY_UPDATE = b"\x00\x00"
_USER_MODULES = 256  # workflow modules imported for a user, kept for their next call (least recently used dropped)
_module_ids = itertools.count()
_ROOM_WAIT_SECONDS = 30.0  # a worker thread waiting for the event loop to open a room (it never should this long)
# HTTP status by error code; anything else raised while running is the function's own failure (500).
_STATUS = {"invalid-argument": 400, "no-such-function": 404, "offload-refused": 403, "unauthorized": 401,
           "not-found": 404, "bad-request": 400, "rate-limited": 429, "server-busy": 503, "timeout": 504}


class RunError(Exception):
    """A refusal before or around the function: its code becomes the reply's, with its HTTP status."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code, self.retry_after = code, retry_after


def run_routes(service: RunService) -> list[BaseRoute]:
    return [
        Route("/api/run/{bundle}/{version}/{function}", service.endpoint, methods=["POST"]),
        Route("/api/run/{bundle}/{version}", service.describe, methods=["GET"]),
    ]


class RunService:
    """Runs calls for signed-in users on bounded worker threads, keeping recent bundle versions open."""

    def __init__(self, registry: Registry, accounts: Accounts, rooms: Rooms, config: ServerConfig) -> None:
        self.registry, self.accounts, self.rooms, self.config = registry, accounts, rooms, config
        self.folder = registry.data / "run"  # published versions unpacked from their chunks, once
        self._workers = _Workers(2 * max(config.run_workers, 1))
        self._slots: asyncio.Semaphore | None = None  # made on the event loop, on first use
        self._waiting = 0
        self._per_user: dict[str, int] = {}
        self._apps = _OpenApps(config.run_open_apps)
        self._user_apps: OrderedDict[tuple[str, str, str], tuple[App, str]] = OrderedDict()  # (app, module name)

    async def describe(self, request: Request) -> JSONResponse:
        """The version's functions and their offload policies, as the device's `describe()` gives them."""
        try:
            await self._user(request)
            bundle, version = _names(request, "bundle", "version")
            app = await self._apps.get((bundle, version), lambda: self._open(bundle, version))
        except RunError as exc:
            return _refusal(exc)
        try:
            info = app.describe()
        finally:
            self._apps.release(app)
        described = {key: info[key] for key in ("name", "version", "functions", "offload")}
        return JSONResponse(described, headers={"Cache-Control": "no-store"})

    async def endpoint(self, request: Request) -> Response:
        try:
            user = await self._user(request)
            bundle, version, function = _names(request, "bundle", "version", "function")
            args = _args(await request.body())
            body = await self.run(user, bundle, version, function, args)
        except RunError as exc:
            return _refusal(exc)
        except Exception as exc:  # a version that fails to open: said as the worker says it, not a bare 500
            log.exception("run: %s failed", request.url.path)
            body = bridge_error(exc).encode()
        return Response(body, status_code=_status(body), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    async def _user(self, request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        session = await run_in_threadpool(self.accounts.session_for, token.strip()) if scheme.lower() == "bearer" else None
        if session is None:
            raise RunError("unauthorized", "sign in: Authorization: Bearer TOKEN is missing, unknown, revoked or expired")
        return session.user

    async def run(self, user: str, bundle: str, version: str, function: str, args: Any) -> bytes:
        """Run one call for `user` within every bound; the reply as the page gets it (JSON bytes)."""
        config = self.config
        if self._per_user.get(user, 0) >= config.run_per_user:
            raise RunError("rate-limited", f"{user} has {config.run_per_user} calls running already "
                           f"({env_name('run_per_user')})", retry_after=1)
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(config.run_workers, 1))
        if self._slots.locked() and self._waiting >= config.run_queue:
            raise RunError("server-busy", f"{config.run_queue} calls are waiting for a worker already "
                           f"({env_name('run_queue')})", retry_after=1)
        self._per_user[user] = self._per_user.get(user, 0) + 1
        try:
            return await self._admitted(user, bundle, version, function, args)
        except TimeoutError:
            raise RunError("timeout", f"{bundle} {version} {function}() did not answer within {config.run_timeout:g} s "
                           f"({env_name('run_timeout')})") from None
        finally:
            self._per_user[user] -= 1
            if not self._per_user[user]:
                del self._per_user[user]

    async def _admitted(self, user: str, bundle: str, version: str, function: str, args: Any) -> bytes:
        """Wait for a slot, open the version, run: the wait and the run within `run_timeout` together.

        Opening a version, and importing its workflow for a user, are not timed: each happens
        once, for the operator's own published bundle, and its result serves the next calls."""
        assert self._slots is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.run_timeout
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.config.run_timeout)
        finally:
            self._waiting -= 1
        try:
            app = await self._apps.get((bundle, version), lambda: self._open(bundle, version))
            try:
                mine = await self._for_user(app, user)  # untimed too: once per user, like the load
                remaining = max(deadline - loop.time(), 0.001)
                return await asyncio.wait_for(self._call(mine, user, function, args), remaining)
            finally:
                self._apps.release(app)
        finally:
            self._slots.release()  # a call cut short by its timeout frees its slot now, its thread when it returns

    async def _open(self, bundle: str, version: str) -> App:
        manifest = await run_in_threadpool(self.registry.manifest, bundle, version)
        if manifest is None:
            raise RunError("not-found", f"{bundle} {version} is not published on this server")
        folder = await run_in_threadpool(self._unpacked, bundle, version, manifest)
        return await self._workers.run(lambda: App.open(folder))

    async def _for_user(self, shared: App, user: str) -> App:
        """`shared`'s models with the workflow module imported for `user` alone (once, then kept)."""
        key = (shared.manifest.name, shared.version, user)
        found = self._user_apps.get(key)
        if found is not None and found[0].models is shared.models:  # not a version closed and opened again
            self._user_apps.move_to_end(key)
            return found[0]
        manifest = shared.manifest
        module_name = f"waystation_run_{manifest.name}_{next(_module_ids)}"
        folder = self.folder / manifest.name / manifest.version

        def load() -> Workflow:
            return Workflow.load(folder / manifest.workflow, module_name)

        workflow = await self._workers.run(_awaitable(load))
        hooks = find_hooks(sys.modules[module_name], manifest.declarations.events)
        app = App(manifest, shared.models, workflow, shared.files, hooks=hooks, data=_NO_DEVICE_DATA)
        self._user_apps[key] = (app, module_name)
        if found is not None:
            sys.modules.pop(found[1], None)
        while len(self._user_apps) > _USER_MODULES:
            _, (_, old_module) = self._user_apps.popitem(last=False)
            sys.modules.pop(old_module, None)  # its App holds no model of its own: nothing to close
        return app

    def _unpacked(self, bundle: str, version: str, manifest_bytes: bytes) -> Path:
        """The version's files in a folder of their own, assembled from the registry's chunks once."""
        folder = self.folder / bundle / version
        if (folder / "manifest.json").is_file():
            return folder
        manifest = Manifest.from_json(manifest_bytes)
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{version}-"))
        try:
            for entry in manifest.files.values():
                target = partial / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    for sha256, _size in entry.chunks:
                        out.write(self.registry.chunks.path(sha256).read_bytes())
            (partial / "manifest.json").write_bytes(manifest_bytes)  # last: its presence means complete
            partial.rename(folder)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            if not (folder / "manifest.json").is_file():  # not another request's rename winning
                raise
        return folder

    async def _call(self, app: App, user: str, function: str, args: Any) -> bytes:
        policy = app.workflow.offload().get(function)
        if policy is not None and policy["offload"] == "never":
            raise RunError("offload-refused", f"{app.manifest.name} {app.version} {function}() is declared "
                           "@export(offload=\"never\"): it runs only on the device")
        states = _RoomStates(user, self.rooms, asyncio.get_running_loop())
        tensors: list[Tensor] = []

        async def call() -> bytes:  # on the worker thread, encoding included: a large result never holds the loop
            reply = await app.call(function, args, tensors=tensors, states=states)
            states.check_writes(function, allowed=bool(policy and policy["writes_state"]))
            encoded = [base64.b64encode(t.data).decode("ascii") for t in tensors]
            try:  # allow_nan=False, as the worker's reply: a NaN result is the function's error
                return json.dumps({"ok": True, **reply, "ranOn": "server", "tensors": encoded}, allow_nan=False).encode()
            except ValueError as exc:
                raise ValueError(f"the result is not JSON: {exc}") from None

        try:
            try:
                body = await self._workers.run(call)
            except Exception as exc:  # the function's failure: the worker's reply, as the device gives it
                return bridge_error(exc).encode()
            await states.apply()
            return body
        finally:
            states.leave()


def _awaitable(work: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        return work()

    return run


class _NoDeviceData:
    """The data backend of calls on the server: events and feature tables belong to the device."""

    name = "server"

    def connect(self) -> sqlite3.Connection:
        raise DataError("ctx.events and ctx.features are the device's own tables: they are not there when the "
                        "server runs a function")

    def durable(self) -> None:
        return None


_NO_DEVICE_DATA = _NoDeviceData()


def _names(request: Request, *keys: str) -> list[str]:
    values = [request.path_params[key] for key in keys]
    for what, value in zip(keys, values):
        if not _NAME.fullmatch(value):
            raise RunError("bad-request", f"{what} {value[:80]!r} is not a name (letters, digits, '.', '_', '-')")
    return values


def _args(body: bytes) -> Any:
    try:
        parsed = parse_object(body or b"{}")
    except BadJSON as exc:
        raise RunError("bad-request", str(exc)) from None
    unknown = set(parsed) - {"args"}
    if unknown:
        raise RunError("bad-request", f"the body takes only 'args', not {sorted(unknown)}")
    return parsed.get("args")


def _status(body: bytes) -> int:
    """200 for a result; for an error, the status of its code (its start is enough to read it)."""
    if body.startswith(b'{"ok": true'):
        return 200
    error = json.loads(body).get("error", {})
    return _STATUS.get(error.get("code", ""), 500)


def _refusal(exc: RunError) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    # `type` beside `code`: the page's WaystationError takes its name from either.
    error = {"code": exc.code, "type": exc.code, "message": str(exc)}
    return JSONResponse({"ok": False, "error": error}, status_code=_STATUS[exc.code], headers=headers)


class _Workers:
    """Daemon threads, each with its own event loop, running coroutines handed over from the server's loop.

    Daemon: a call stuck past its timeout must not keep the server from exiting."""

    def __init__(self, count: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Awaitable[Any]], _Job]] = queue.SimpleQueue()
        for i in range(count):
            threading.Thread(target=self._serve, name=f"waystation-run-{i}", daemon=True).start()

    async def run(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Await `make()` run on a worker thread; cancelling this cancels it at its next await there."""
        job = _Job()
        self._jobs.put((make, job))
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.cancel()
            raise

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            make, job = self._jobs.get()
            if not job.future.set_running_or_notify_cancel():
                continue  # given up on while it waited
            try:
                job.future.set_result(loop.run_until_complete(job.start(loop, make)))
            except BaseException as exc:
                if not job.future.done():
                    job.future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))


class _Job:
    def __init__(self) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self._lock = threading.Lock()

    async def start(self, loop: asyncio.AbstractEventLoop, make: Callable[[], Awaitable[Any]]) -> Any:
        with self._lock:
            self._loop, self._task = loop, asyncio.ensure_future(make())
            if self._cancelled:
                self._task.cancel()
        return await self._task

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)


class _OpenApps:
    """A bounded LRU of open bundle versions; one open per version however many ask at once.

    An App pushed out while calls use it is closed when the last of them is done."""

    def __init__(self, size: int) -> None:
        self.size = max(size, 1)
        self._open: OrderedDict[tuple[str, str], App] = OrderedDict()
        self._opening: dict[tuple[str, str], asyncio.Future[App]] = {}
        self._users: dict[int, int] = {}
        self._evicted: set[int] = set()

    async def get(self, key: tuple[str, str], open_app: Callable[[], Awaitable[App]]) -> App:
        while (app := self._open.get(key)) is None:  # again if pushed out (and closed) before this waiter woke
            opening = self._opening.get(key)
            if opening is None:
                opening = self._opening[key] = asyncio.ensure_future(open_app())
                opening.add_done_callback(self._opened_callback(key))
            await asyncio.shield(opening)
        self._open.move_to_end(key)
        self._users[id(app)] = self._users.get(id(app), 0) + 1
        return app

    def _opened_callback(self, key: tuple[str, str]) -> Callable[[asyncio.Future[App]], None]:
        return lambda future: self._opened(key, future)

    def _opened(self, key: tuple[str, str], future: asyncio.Future[App]) -> None:
        del self._opening[key]
        if future.cancelled() or future.exception() is not None:
            return
        self._open[key] = future.result()
        while len(self._open) > self.size:
            _, old = self._open.popitem(last=False)
            self._evicted.add(id(old))
            self._close_if_unused(old)

    def release(self, app: App) -> None:
        self._users[id(app)] -= 1
        self._close_if_unused(app)

    def _close_if_unused(self, app: App) -> None:
        if self._users.get(id(app), 0) == 0 and id(app) in self._evicted:
            self._users.pop(id(app), None)
            self._evicted.discard(id(app))
            app.close()



class _SilentClient(Client):
    """The server's own place in a user's room while a call reads or writes it: it hears nothing."""

    def send(self, message: bytes) -> None:
        pass

    def send_awareness(self, entries: Any) -> None:
        pass


class _RoomStates:
    """`ctx.state` on the server: the calling user's synced documents, copied from their rooms.

    A worker thread asks for a document; the event loop joins its room (loading it if no device
    has it open) and hands back its state, which the thread copies into a document of its own.
    After the call, what changed is applied to each room from the event loop, as an update a
    device sent, so the user's connected devices receive it."""

    name = "server"

    def __init__(self, user: str, rooms: Rooms, loop: asyncio.AbstractEventLoop) -> None:
        self.user, self.rooms, self.loop = user, rooms, loop
        self._docs: dict[str, tuple[NativeStateDoc, bytes]] = {}  # name: (copy, its state vector when copied)
        self._joined: dict[str, Room] = {}
        self._client = _SilentClient(None, user)  # type: ignore[arg-type]  # never sends
        self._updates: dict[str, bytes] = {}
        self._left = False

    def doc(self, name: str) -> NativeStateDoc:
        if name not in self._docs:
            if not DOC_NAME.fullmatch(name):
                raise ValueError(f"state name {name!r}: use 1-128 letters, digits and _.:-")
            state = asyncio.run_coroutine_threadsafe(self._join(name), self.loop).result(_ROOM_WAIT_SECONDS)
            doc = NativeStateDoc()
            doc.apply_update(state)
            self._docs[name] = (doc, doc.state_vector())
        return self._docs[name][0]

    def names(self) -> list[str]:
        return sorted(self._docs)

    async def _join(self, name: str) -> bytes:
        room_name = f"{self.user}/{name}"
        if self._left:
            raise StateError(f"document {name!r}: the call has ended (timed out)")
        if room_name not in self._joined:
            try:
                self._joined[room_name] = await self.rooms.join(room_name, self._client)
            except LimitExceeded as exc:
                raise StateError(f"document {name!r}: {exc.reason}") from None
        return bytes(self._joined[room_name].doc.get_update())

    def check_writes(self, function: str, *, allowed: bool) -> None:
        """Collect each document's changes (on the worker thread); StateError if the function may not write."""
        for name, (doc, before) in self._docs.items():
            update = doc.encode_state(before)
            if update != _EMPTY_UPDATE:
                self._updates[name] = update
        if self._updates and not allowed:
            raise StateError(f"{function}() wrote to {sorted(self._updates)} on the server, but it is not declared "
                             "@export(..., writes_state=True): its writes were not kept")

    async def apply(self) -> None:
        """Apply the collected changes through each room (stored, then sent to devices); return once stored."""
        for name, update in self._updates.items():
            room = self._joined[f"{self.user}/{name}"]
            try:
                room.receive(self._client, encode_update(update))
            except LimitExceeded as exc:
                raise RunError("bad-request", f"document {name!r}: {exc.reason}") from None
        if self._updates:
            await self.rooms.store.flush()  # an answer that says "written" means stored, as a device's acknowledgement

    def leave(self) -> None:
        """Leave every room joined (on the event loop); a thread still running past its timeout joins no more."""
        self._left = True
        for room in self._joined.values():
            self.rooms.leave(room, self._client)
        self._joined.clear()
