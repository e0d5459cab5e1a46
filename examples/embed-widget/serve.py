"""A plain static file server for the example: Python's http.server and the headers an app
serving Waystation's runtime should send (docs/embedding.md). Not `waystation serve`: this app
has no bundle registry, so the runtime installs the bundles its build holds.

    waystation build --runtime-only --out examples/embed-widget/waystation
    python examples/embed-widget/serve.py [--port 8080] [--no-isolation]

--no-isolation leaves out COOP/COEP: the page still works, with onnxruntime-web on one thread.
"""

from __future__ import annotations

import argparse
import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

# Cross-origin isolation: what onnxruntime-web needs for its WASM threads (SharedArrayBuffer).
ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Pyodide and onnxruntime-web compile WebAssembly: 'wasm-unsafe-eval', never 'unsafe-eval'.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'")


class Handler(SimpleHTTPRequestHandler):
    isolation = True
    # WebAssembly compiles while it streams in only when served as application/wasm; module
    # workers and imports need a JavaScript type for .mjs too.
    extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".mjs": "text/javascript", ".js": "text/javascript", ".json": "application/json"}

    def end_headers(self) -> None:
        for name, value in {**(ISOLATION if self.isolation else {}), "Content-Security-Policy": CSP,
                            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: one line per request is noise here
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--directory", type=Path, default=Path(__file__).parent, help="the app's static folder")
    parser.add_argument("--no-isolation", action="store_true", help="no COOP/COEP: ort runs single-threaded")
    args = parser.parse_args()
    handler = type("AppHandler", (Handler,), {"isolation": not args.no_isolation})
    server = ThreadingHTTPServer((args.host, args.port), functools.partial(handler, directory=str(args.directory)))
    print(f"serving {args.directory} on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
