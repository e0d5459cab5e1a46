"""Global feature tables for devices: the rows that changed since the version a device has.

    GET /api/features/{name}?since=VERSION
    -> 200 {"name": "items", "version": 7, "since": 5, "full": false, "key": "item_id",
            "columns": [["item_id", "str"], ["embedding", "vector[384]"]],
            "rows": [[...], ...], "deleted": [...]}

Without `since`, or with a version the delta cannot start from, `full` is true and `rows` is
the whole table. The answer is gzip-compressed for a client that accepts it. Answers are
kept (a few, by table, version and starting point, bounded in bytes): every device fetching
the whole table after a publish costs one read and one compression, not one each. Tables are
published with `waystation features publish` (server/features_store.py); reading needs no
account (bundles, which read them, need none either). SQLite and compression run off the
event loop.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..device.data.schema import check_name
from ..device.errors import DataError
from ._gzip import accepts_gzip, compress
from .features_store import FeatureStore
from .storage import Storage

__all__ = ["AnswerCache", "feature_routes"]

_CACHED_ANSWERS = 32
_CACHED_BYTES = 64 << 20


class AnswerCache:
    """Recent answers by key, least recently used dropped first, within a count and a byte budget. Thread-safe."""

    def __init__(self, entries: int = _CACHED_ANSWERS, max_bytes: int = _CACHED_BYTES) -> None:
        self.entries, self.max_bytes = entries, max_bytes
        self._items: OrderedDict[tuple[object, ...], tuple[bytes, bool]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> tuple[bytes, bool] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[object, ...], value: tuple[bytes, bool]) -> None:
        if len(value[0]) > self.max_bytes // 4:
            return  # one huge answer must not flush every other
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += len(value[0])
            while len(self._items) > self.entries or self._bytes > self.max_bytes:
                _, (body, _) = self._items.popitem(last=False)
                self._bytes -= len(body)


def feature_routes(data: Path | Storage) -> list[BaseRoute]:
    store = FeatureStore(data)
    cache = AnswerCache()
    making = threading.Lock()  # one answer made at a time: a burst of misses makes it once, not once each

    def answer(name: str, since: int | None, gzip: bool) -> tuple[bytes, bool] | None:
        head = store.head(name)
        if head is None:
            return None
        version, full_since = head
        full = since is None or since < full_since or since > version
        key = (name, version, None if full else since, gzip)
        found = cache.get(key)
        if found is not None:
            return found
        with making:
            found = cache.get(key)
            if found is None:
                body = store.delta_json(name, since)
                if body is None:
                    return None
                packed = compress(body) if gzip else None
                found = (body, False) if packed is None else (packed, True)
                cache.put(key, found)
        return found

    async def delta(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            check_name(name, "feature table")
        except DataError as exc:
            return _error(400, str(exc))
        raw = request.query_params.get("since")
        if raw is not None and not (raw.isdigit() and len(raw) <= 15):
            return _error(400, "?since= must be a version number (a whole number)")
        found = await run_in_threadpool(answer, name, None if raw is None else int(raw), accepts_gzip(request.headers))
        if found is None:
            return _error(404, f"no feature table {name!r} is published")
        body, gzipped = found
        headers = {"Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type="application/json", headers=headers)

    return [Route("/api/features/{name}", delta)]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})
