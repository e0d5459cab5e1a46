"""Static files with the headers an offline, cross-origin-isolated app needs."""

from __future__ import annotations

import re

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["ISOLATION_HEADERS", "SiteFiles", "cache_control"]

# COOP + COEP make the page cross-origin isolated, which onnxruntime-web needs for WASM
# threads (it silently runs single-threaded otherwise: onnxruntime #9681).
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MEDIA_TYPES = {
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".wasm": "application/wasm",
    ".whl": "application/zip",
    ".onnx": "application/octet-stream",
    ".json": "application/json",
}
_IMMUTABLE = re.compile(r"^bundles/[^/]+/\d+\.\d+\.\d+[^/]*/")


def cache_control(path: str) -> str:
    """Versioned bundle files never change; everything else is revalidated (ETag) each time."""
    if _IMMUTABLE.match(path):
        return "public, max-age=31536000, immutable"
    return "no-cache"


class SiteFiles(StaticFiles):
    """`StaticFiles` over dist/ with correct media types, cache and isolation headers."""

    def file_response(self, full_path, stat_result, scope: Scope, status_code: int = 200) -> Response:  # type: ignore[no-untyped-def]
        response = super().file_response(full_path, stat_result, scope, status_code)
        path = scope["path"].lstrip("/")
        suffix = "." + str(full_path).rsplit(".", 1)[-1]
        if suffix in MEDIA_TYPES:
            response.headers["content-type"] = MEDIA_TYPES[suffix]
        response.headers["cache-control"] = cache_control(path)
        return response
