"""The `waystation` command.

    waystation build [--out dist]
    waystation serve [--host 127.0.0.1] [--port 8000] [--data data]
    waystation run models/digits classify_features --args '{"features": [[0, 0, 5, ...]]}'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from . import __version__

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the command line shows one clear line, not a traceback
        from .device.errors import WaystationError

        if not isinstance(exc, (WaystationError, ValueError, TypeError, OSError)):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="waystation", description="Offline-first, on-device inference for the web.")
    parser.add_argument("--version", action="version", version=f"waystation {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build the static site")
    build.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default: dist)")
    build.add_argument("--project", type=Path, default=None, help="project root (default: found from cwd)")
    build.set_defaults(handler=_build)

    serve = commands.add_parser("serve", help="serve the site and the APIs (builds first if needed)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data", type=Path, default=Path("data"), help="where all server state lives")
    serve.add_argument("--site", type=Path, default=Path("dist"), help="the built site to serve")
    serve.add_argument("--project", type=Path, default=None, help="project root, to build the site if missing")
    serve.set_defaults(handler=_serve)

    run = commands.add_parser("run", help="run a workflow function on CPython and print its JSON result")
    run.add_argument("bundle", type=Path, help="a bundle source folder (with bundle.toml) or a built bundle")
    run.add_argument("function")
    run.add_argument("--args", default="{}", help="JSON object of named arguments, or array of positional ones")
    run.add_argument("--metrics", action="store_true", help="print {result, metrics, ms} instead of the result")
    run.set_defaults(handler=_run)
    return parser


def _build(args: argparse.Namespace) -> None:
    from .site import build_site, find_project_root

    root = args.project or find_project_root()
    build_site(root, args.out.resolve(), progress=_say)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .server.app import create_app

    if not (args.site / "boot.json").is_file():
        from .site import build_site, find_project_root

        build_site(args.project or find_project_root(), args.site.resolve(), progress=_say)
    app = create_app(site=args.site, data=args.data)
    _say(f"serving {args.site} on http://{args.host}:{args.port} (data in {args.data})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _run(args: argparse.Namespace) -> None:
    try:
        call_args: Any = json.loads(args.args)
    except ValueError as exc:
        raise ValueError(f"--args is not valid JSON: {exc}") from None
    reply = asyncio.run(run_function(args.bundle, args.function, call_args))
    print(json.dumps(reply if args.metrics else reply["result"]))


async def run_function(bundle: Path, function: str, call_args: Any) -> dict[str, Any]:
    """Open a bundle (building a source folder first) on the native host and call one function."""
    from .device.runtime import App

    folder = _built_bundle(bundle)
    app = await App.open(folder)
    try:
        return await app.call(function, call_args)
    finally:
        app.close()


def _built_bundle(bundle: Path) -> Path:
    if (bundle / "manifest.json").is_file():
        return bundle
    from .bundles.builder import build_bundle
    from .bundles.pypi_assets import cache_dir

    return build_bundle(bundle, cache_dir() / "run", progress=lambda msg: print(msg, file=sys.stderr))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
