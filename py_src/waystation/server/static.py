"""Static files with the media types and cache headers an offline app needs.

Dotfiles (any path segment starting with '.') are never served: a 404, as if absent. Cache
headers are decided on the file actually served (its resolved path under the site), never on
the path as the client spelled it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["SiteFiles", "cache_control"]

MEDIA_TYPES = {
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".wasm": "application/wasm",
    ".whl": "application/zip",
    ".onnx": "application/octet-stream",
    ".json": "application/json",
}
_IMMUTABLE = re.compile(r"^bundles/[^/.][^/]*/\d+\.\d+\.\d+[^/]*/[^/]")


def cache_control(path: str) -> str:
    """Versioned bundle files never change; everything else is revalidated (ETag) each time.

    `path` is a served file's path relative to the site, resolved (no '.' or '..' segments).
    """
    if _IMMUTABLE.match(path):
        return "public, max-age=31536000, immutable"
    return "no-cache"


class SiteFiles(StaticFiles):
    """`StaticFiles` over dist/ with correct media types and cache headers, and no dotfiles."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if any(segment.startswith(".") for segment in scope["path"].split("/")):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)

    def file_response(self, full_path, stat_result, scope: Scope, status_code: int = 200) -> Response:  # type: ignore[no-untyped-def]
        response = super().file_response(full_path, stat_result, scope, status_code)
        suffix = "." + str(full_path).rsplit(".", 1)[-1]
        if suffix in MEDIA_TYPES:
            response.headers["content-type"] = MEDIA_TYPES[suffix]
        response.headers["cache-control"] = cache_control(self._site_path(full_path))
        return response

    def _site_path(self, full_path: str | os.PathLike[str]) -> str:
        """`full_path` (resolved by lookup_path) relative to the site, or "" if outside it."""
        assert self.directory is not None
        try:
            return Path(full_path).relative_to(os.path.realpath(self.directory)).as_posix()
        except ValueError:
            return ""
