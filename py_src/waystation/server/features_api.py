"""Global feature tables for devices: the rows that changed since the version a device has.

    GET /api/features/{name}?since=VERSION
    -> 200 {"name": "items", "version": 7, "since": 5, "full": false, "key": "item_id",
            "columns": [["item_id", "str"], ["embedding", "vector[384]"]],
            "rows": [[...], ...], "deleted": [...]}

Without `since`, or with a version the delta cannot start from, `full` is true and `rows` is
the whole table. The answer is gzip-compressed for a client that accepts it. Tables are
published with `waystation features publish` (server/features_store.py); reading needs no
account (bundles, which read them, need none either). SQLite and compression run off the
event loop.
"""

from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..device.data.schema import check_name
from ..device.errors import DataError
from ._gzip import accepts_gzip, compress
from .features_store import FeatureStore

__all__ = ["feature_routes"]


def feature_routes(data: Path) -> list[BaseRoute]:
    store = FeatureStore(data)

    def answer(name: str, since: int | None, gzip: bool) -> tuple[bytes, bool] | None:
        body = store.delta_json(name, since)
        if body is None:
            return None
        packed = compress(body) if gzip else None
        return (body, False) if packed is None else (packed, True)

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
