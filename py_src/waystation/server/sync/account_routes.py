"""The account API of the sync server, over HTTP.

    POST /api/sync/register    {"user", "password"}   ->  201 {"user", "token", "issued_at", "expires_at"}
    POST /api/sync/login       {"user", "password"}   ->  200 {"user", "token", "issued_at", "expires_at"}
    POST /api/sync/renew       Bearer TOKEN           ->  200 a new token; the old one works one more minute
    POST /api/sync/logout      Bearer TOKEN           ->  200 {"revoked": 1}; its sockets close with 4401
    POST /api/sync/logout-all  Bearer TOKEN           ->  200 {"revoked": N}; every socket of the user closes
    POST /api/sync/password    Bearer TOKEN {"old", "new"}  ->  200 a new token; every other one is revoked

`user` is returned canonical (lower case); times are Unix seconds. Refusals are JSON
{"error": "..."}: 400 a body or password that will not do, 401 wrong password or token,
409 a taken name, 429 throttled and 503 busy hashing (both with Retry-After).

Passwords are hashed on threads of their own (`hashing`), never in the thread pool that
WebSocket token checks use, and only after the throttle (`throttle`) let the try through.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .._json import BadJSON, fields, json_object
from .auth import Accounts, Issued, canonical_user
from .errors import AccountError, RetryLater
from .hashing import PasswordHasher
from .sessions import Sessions
from .throttle import LoginThrottle

__all__ = ["AccountRoutes", "bearer_token"]

_Handler = Callable[[Request], Awaitable[JSONResponse]]
T = TypeVar("T")


class AccountRoutes:
    """Register, log in, renew, log out and change passwords; revocations close sockets at once."""

    def __init__(self, accounts: Accounts, sessions: Sessions, hasher: PasswordHasher,
                 throttle: LoginThrottle) -> None:
        self.accounts, self.sessions, self.hasher, self.throttle = accounts, sessions, hasher, throttle

    def routes(self) -> list[BaseRoute]:
        handlers: dict[str, _Handler] = {
            "register": self.register, "login": self.login, "renew": self.renew, "logout": self.logout,
            "logout-all": self.logout_all, "password": self.password,
        }
        return [Route(f"/api/sync/{name}", _answering(handler), methods=["POST"]) for name, handler in handlers.items()]

    async def register(self, request: Request) -> JSONResponse:
        user, password = fields(await json_object(request), user=str, password=str)
        self.throttle.check(_address(request))
        issued: Issued = await self.hasher.run(self.accounts.register, user, password)
        return JSONResponse(issued.json(), status_code=201)

    async def login(self, request: Request) -> JSONResponse:
        user, password = fields(await json_object(request), user=str, password=str)
        address = _address(request)
        try:
            name = canonical_user(user, for_login=True)
        except AccountError:
            self.throttle.check(address)  # a name that cannot exist still spends the address' budget
            raise
        self.throttle.check(address, name)
        issued = await self._checking(name, address, self.accounts.login, user, password)
        return JSONResponse(issued.json())

    async def renew(self, request: Request) -> JSONResponse:
        old, issued = await run_in_threadpool(self.accounts.renew, bearer_token(request))
        self.sessions.move(old.digest, issued.session())
        return JSONResponse(issued.json())

    async def logout(self, request: Request) -> JSONResponse:
        session = await run_in_threadpool(self.accounts.logout, bearer_token(request))
        self.sessions.revoke(session.digest)
        return JSONResponse({"revoked": 1})

    async def logout_all(self, request: Request) -> JSONResponse:
        session, count = await run_in_threadpool(self.accounts.logout_all, bearer_token(request))
        self.sessions.revoke_user(session.user)
        return JSONResponse({"revoked": count})

    async def password(self, request: Request) -> JSONResponse:
        token = bearer_token(request)
        old, new = fields(await json_object(request), old=str, new=str)
        session = await run_in_threadpool(self.accounts.session_for, token)
        if session is None:
            raise AccountError(401, "the token is missing, unknown, revoked or expired: log in again")
        address = _address(request)
        self.throttle.check(address, session.user.casefold())
        previous, issued = await self._checking(session.user.casefold(), address, self.accounts.change_password,
                                                token, old, new)
        self.sessions.move(previous.digest, issued.session())
        self.sessions.revoke_user(issued.user, keep=issued.digest)
        return JSONResponse(issued.json())

    async def _checking(self, user: str, address: str, call: Callable[..., T], *args: str) -> T:
        """`call` on the hashing threads, its wrong passwords counted against `user`."""
        try:
            result = await self.hasher.run(call, *args)
        except AccountError as exc:
            if exc.status == 401:
                self.throttle.failed(user)
            raise
        self.throttle.succeeded(user, address)
        return result


def bearer_token(request: Request) -> str:
    """The token of `Authorization: Bearer TOKEN`; AccountError 401 without one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AccountError(401, "send the token as `Authorization: Bearer TOKEN`")
    return token.strip()


def _answering(handler: _Handler) -> _Handler:
    """`handler` with its refusals as JSON {"error"} and the right status (Retry-After on 429 and 503)."""
    async def answer(request: Request) -> JSONResponse:
        try:
            return await handler(request)
        except BadJSON as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except RetryLater as exc:
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)
        except AccountError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    return answer


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
