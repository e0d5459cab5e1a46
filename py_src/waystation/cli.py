"""The `waystation` command.

    waystation build [--out dist] [--key KEY] [--runtime-only]
    waystation serve [--host 127.0.0.1] [--port 8000] [--data data]
    waystation run models/digits classify_features --args '{"features": [[0, 0, 5, ...]]}' [--data DIR]
    waystation run models/minilm notes --data DIR --server http://127.0.0.1:8000 --user ada   # ctx.state synced
    waystation keys [--out keys]
    waystation new NAME [--dir models]
    waystation bundle build models/digits [--out build/bundles] [--key keys/waystation.key] [--force]
    waystation bundle publish build/bundles/digits/1.0.0 --channel stable --rollout 25 [--halt-if RULES] [--data data]
                              [--static-dir DIR]   # also its chunks to DIR/chunks/, for a static host or CDN
    waystation bundle diff build/bundles/digits/1.0.0 build/bundles/digits/1.0.1 [--json]
    waystation bundle check build/bundles/digits/1.0.1
    waystation bundle rollback --channel stable --bundle digits [--data data]
    waystation bundle revoke digits 1.0.1 [--reason TEXT] [--data data]
    waystation bundle logging digits --channel stable --share 10 --level info [--data data]
    waystation features publish items items.jsonl --key item_id [--data data]
    waystation events export clicks [--bundle demo] [--since 7d] [--format jsonl|csv] [--data data]
    waystation admin token [--revoke-all] [--data data]
    waystation db migrate [--data data] [--database URL]    # every store's schema, before a rolling deploy
    waystation db status [--data data] [--database URL]

Every command with --data also takes --database URL (or $WAYSTATION_DATABASE): the server's state
in PostgreSQL, shared by many instances, instead of SQLite files under --data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from . import __version__
from .data_cli import add_data_commands
from .extras import command_name, missing_extra
from .state_args import add_state_arguments, state_storage

__all__ = ["LOG_LEVELS", "main"]

# waystation.device.log.LEVELS, spelled here so that `waystation --help` need not import the device package
LOG_LEVELS = ("debug", "info", "warning", "error")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the user's mistake is one clear line; a bug of Waystation's keeps its traceback
        missing = missing_extra(exc, command_name(args.handler))  # an optional dependency not installed: which extra
        line, status = (missing, 1) if missing else _error_line(exc)
        if line is None:
            raise
        if args.debug:
            traceback.print_exception(exc, file=sys.stderr)
        print(line, file=sys.stderr)
        return status


# Exit statuses: 2 for a call the user got wrong (as argparse's usage errors), 1 for a failure.
_USAGE_CODES = frozenset({"invalid-argument", "no-such-function"})


def _error_line(exc: Exception) -> tuple[str | None, int]:
    """`error: CODE: message` and the exit status, or (None, 1) for a bug, whose traceback the user should see."""
    from .device.errors import WORKFLOW_ERROR, WaystationError, raised_by_workflow

    if isinstance(exc, WaystationError):
        return f"error: {exc.code}: {exc}", 2 if exc.code in _USAGE_CODES else 1
    if raised_by_workflow(exc):  # the workflow's own exception: its Python type says what it was
        return f"error: {WORKFLOW_ERROR}: {type(exc).__name__}: {exc}", 1
    if isinstance(exc, (ValueError, TypeError, OSError)):  # the other commands' bad input (files, values)
        return f"error: {type(exc).__name__}: {exc}", 1
    from .server.storage import StorageError

    if isinstance(exc, StorageError):  # a bad --database, PostgreSQL down, a write breaking a constraint
        return f"error: {type(exc).__name__}: {exc}", 1
    return None, 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="waystation", description="Offline-first, on-device inference for the web.")
    parser.add_argument("--version", action="version", version=f"waystation {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not only its line")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build the static site")
    build.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default: dist)")
    build.add_argument("--project", type=Path, default=None, help="project root (default: found from cwd)")
    build.add_argument("--key", type=Path, default=None, help="private key signing the bundles (default: a dev key)")
    build.add_argument("--runtime-only", action="store_true",
                       help="only Waystation's runtime and bundles, for another app's static folder (docs/embedding.md)")
    build.set_defaults(handler=_build)

    serve = commands.add_parser("serve", help="serve the site and the APIs (builds first if needed)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    add_state_arguments(serve, "where the server's state lives: SQLite files, or with --database the instance's "
                               "caches (default: data)")
    serve.add_argument("--pubsub", default=None, metavar="URL",
                       help="redis:// URL relaying sync rooms between instances (default: $WAYSTATION_PUBSUB; "
                            "unset: one instance)")
    serve.add_argument("--site", type=Path, default=Path("dist"), help="the built site to serve")
    serve.add_argument("--project", type=Path, default=None, help="project root, to build the site if missing")
    serve.set_defaults(handler=_serve)

    run = commands.add_parser("run", help="run a workflow function on CPython and print its JSON result")
    run.add_argument("bundle", type=Path, help="a bundle source folder (with bundle.toml) or a built bundle")
    run.add_argument("function")
    run.add_argument("--args", default="{}", metavar="JSON|@FILE|-",
                     help="JSON object of named arguments, or array of positional ones: inline, @FILE, or - for stdin")
    run.add_argument("--metrics", action="store_true", help="print {result, metrics, ms} instead of the result")
    run.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="ctx.log lines shown on stderr (default: info)")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                     help="show the traceback of an error, not only its line")
    run.add_argument("--data", type=Path, default=None,
                     help="the device's data folder for events, features and ctx.state (default: $XDG_DATA_HOME/waystation)")
    run.add_argument("--server", default=None, metavar="URL",
                     help="sync ctx.state with --user's documents on this Waystation server (http://host:port)")
    run.add_argument("--user", default=None, help="the account to sync as (password: $WAYSTATION_PASSWORD or a prompt)")
    run.add_argument("--token", default=None, help="a login token for --user instead of a password")
    run.add_argument("--sync-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="longest wait for the server per document before running offline (default: 10)")
    run.set_defaults(handler=_run)

    keys = commands.add_parser("keys", help="make an Ed25519 key pair for signing bundles")
    keys.add_argument("--out", type=Path, default=Path("keys"), help="folder for NAME.key and NAME.pub (default: keys)")
    keys.add_argument("--name", default="waystation", help="file name of the pair (default: waystation)")
    keys.set_defaults(handler=_keys)

    new = commands.add_parser("new", help="start a bundle source that builds and runs as it is")
    new.add_argument("name", help="bundle name: lower-case letters, digits and '_'")
    new.add_argument("--dir", type=Path, default=Path("."), help="folder to create NAME/ in (default: .)")
    new.set_defaults(handler=_new)

    _bundle_parser(commands.add_parser("bundle", help="build, publish, compare and roll back bundles"))
    _admin_parser(commands.add_parser("admin", help="admin tokens for the fleet dashboard and /api/admin"))
    _db_parser(commands.add_parser("db", help="the server's database schema: migrate it, or see where it stands"))
    add_data_commands(commands)
    return parser


def _bundle_parser(bundle: argparse.ArgumentParser) -> None:
    commands = bundle.add_subparsers(required=True, metavar="COMMAND")
    data_help = "the server's data folder (default: data)"

    build = commands.add_parser("build", help="build a bundle source into NAME/VERSION, chunks and a signed manifest")
    build.add_argument("source", type=Path, help="a bundle source folder (with bundle.toml)")
    build.add_argument("--out", type=Path, default=Path("build/bundles"), help="output folder (default: build/bundles)")
    build.add_argument("--key", type=Path, default=None, help="private key to sign with (default: the dev key)")
    build.add_argument("--force", action="store_true",
                       help="replace OUT/NAME/VERSION even if built from other content (local builds only: "
                            "a published version never changes)")
    build.set_defaults(handler=_bundle_build)

    publish = commands.add_parser("publish", help="publish a built bundle to a channel of the server's registry")
    publish.add_argument("bundle", type=Path, help="a built bundle folder (NAME/VERSION with manifest.json)")
    publish.add_argument("--channel", default="stable", help="channel to release on (default: stable)")
    publish.add_argument("--rollout", type=int, default=100, metavar="PERCENT", help="share of devices (default: 100)")
    add_state_arguments(publish, data_help)
    publish.add_argument("--trusted-key", type=Path, action="append", default=None, metavar="PUB",
                         help="refuse the bundle unless signed by this public key (repeatable)")
    publish.add_argument("--halt-if", default=None, metavar="RULES",
                         help="halt the rollout by itself when devices' telemetry breaks these rules, "
                              "e.g. 'errors>1%%,p95>1.5x,devices>=10' (docs/fleet.md)")
    publish.add_argument("--static-dir", type=Path, default=None, metavar="DIR",
                         help="also write the bundle's chunks to DIR/chunks/<sha256>, before the release, for a "
                              "static host or CDN that devices fetch them from (docs/static-hosting.md)")
    publish.set_defaults(handler=_bundle_publish)

    diff = commands.add_parser("diff", help="what a device on bundle A fetches to reach bundle B")
    diff.add_argument("a", type=Path, help="built bundle folder or manifest.json")
    diff.add_argument("b", type=Path, help="built bundle folder or manifest.json")
    diff.add_argument("--json", action="store_true", help="print JSON instead of a table")
    diff.set_defaults(handler=_bundle_diff)

    check = commands.add_parser("check", help="run a built bundle's smoke check on CPython, as a device does")
    check.add_argument("bundle", type=Path, help="a built bundle folder (NAME/VERSION with manifest.json)")
    check.set_defaults(handler=_bundle_check)

    rollback = commands.add_parser("rollback", help="withdraw a channel's newest release")
    rollback.add_argument("--channel", default="stable", help="channel (default: stable)")
    rollback.add_argument("--bundle", required=True, help="bundle name")
    add_state_arguments(rollback, data_help)
    rollback.set_defaults(handler=_bundle_rollback)

    revoke = commands.add_parser("revoke", help="stop serving a version for good; devices holding it stop using it")
    revoke.add_argument("name", help="bundle name")
    revoke.add_argument("version", help="the published version to revoke")
    revoke.add_argument("--reason", default="", help="why, kept in the registry for its history")
    add_state_arguments(revoke, data_help)
    revoke.set_defaults(handler=_bundle_revoke)

    logging = commands.add_parser("logging", help="ask a share of a channel's devices to send their log lines")
    logging.add_argument("name", help="bundle name")
    logging.add_argument("--channel", default="stable", help="channel (default: stable)")
    logging.add_argument("--share", type=int, required=True, metavar="PERCENT", help="share of devices; 0 turns it off")
    logging.add_argument("--level", choices=LOG_LEVELS, default="warning",
                         help="lines at this level and above (default: warning)")
    add_state_arguments(logging, data_help)
    logging.set_defaults(handler=_bundle_logging)


def _admin_parser(admin: argparse.ArgumentParser) -> None:
    commands = admin.add_subparsers(required=True, metavar="COMMAND")
    token = commands.add_parser("token", help="print a new admin token (only its hash is stored)")
    add_state_arguments(token)
    token.add_argument("--revoke-all", action="store_true", help="drop every admin token instead of making one")
    token.set_defaults(handler=_admin_token)


def _db_parser(db: argparse.ArgumentParser) -> None:
    commands = db.add_subparsers(required=True, metavar="COMMAND")
    migrate = commands.add_parser("migrate", help="apply every store's pending schema migrations (once, before a deploy)")
    add_state_arguments(migrate)
    migrate.set_defaults(handler=_db_migrate)
    status = commands.add_parser("status", help="each store's schema version, applied and known to this release")
    add_state_arguments(status)
    status.set_defaults(handler=_db_status)


def _db_migrate(args: argparse.Namespace) -> None:
    from .server.schema import migrate

    storage = state_storage(args)
    for store, version in migrate(storage).items():
        print(f"{store}: schema version {version}")
    _say(f"migrated {storage.describe()}")


def _db_status(args: argparse.Namespace) -> None:
    from .server.schema import status

    behind = 0
    for store, (applied, newest) in status(state_storage(args)).items():
        behind += applied < newest
        print(f"{store}: {applied} of {newest}" + ("  (migrate due)" if applied < newest else ""))
    if behind:
        raise SystemExit(1)


def _admin_token(args: argparse.Namespace) -> None:
    from .server.admin_auth import AdminTokens

    tokens = AdminTokens(state_storage(args))
    if args.revoke_all:
        _say(f"revoked {tokens.revoke_all()} admin token(s): /api/admin answers 401 until a new one is made")
        return
    _say("a new admin token; it is shown only this once (the server keeps its hash). "
         "Give it to the dashboard at /dashboard, or send it as `Authorization: Bearer TOKEN`")
    print(tokens.make())


def _build(args: argparse.Namespace) -> None:
    from .site import build_site, find_project_root

    root = args.project or find_project_root()
    if args.runtime_only:
        from .runtime_export import build_runtime

        build_runtime(root, args.out.resolve(), progress=_say, key=args.key, bar=_bar)
        return
    build_site(root, args.out.resolve(), progress=_say, key=args.key, bar=_bar)


def _serve(args: argparse.Namespace) -> None:
    from .server.app import create_app
    from .server.config import ServerConfig
    from .server.connections import serve

    config = ServerConfig.from_env()  # before building anything: a malformed setting stops here
    if not (args.site / "boot.json").is_file():
        from .site import build_site, find_project_root

        build_site(args.project or find_project_root(), args.site.resolve(), progress=_say)
    from .server.registry import Registry
    from .server.site_bundles import publish_site_bundles

    storage = state_storage(args)
    for release in publish_site_bundles(Registry(storage), args.site, warn=_say):
        _say(f"published the site's {release}")
    app = create_app(site=args.site, data=storage, config=config, pubsub=args.pubsub)
    _say(f"serving {args.site} on http://{args.host}:{args.port} (state: {storage.describe()})")
    serve(app, args.host, args.port, config, say=_say)


def _run(args: argparse.Namespace) -> None:
    from .device.arguments import load_arguments, result_json
    from .device.log import set_log_level

    set_log_level(args.log_level)
    text, source = _arguments_text(args.function, args.args)
    call_args = load_arguments(args.function, text, source=source, typed=True)
    sync = _sync_options(args)
    reply = asyncio.run(run_function(args.bundle, args.function, call_args, data=args.data, sync=sync))
    # a result the page could not receive (NaN, Infinity) fails here as it fails there
    print(result_json(args.function, reply if args.metrics else reply["result"]))


def _arguments_text(function: str, spec: str) -> tuple[str, str]:
    """The JSON text of --args and what to call it in a message: inline, `@FILE` or `-` (stdin)."""
    from .device.errors import ArgumentError

    if spec == "-":
        return sys.stdin.read(), "--args - (stdin)"
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            return path.read_text(encoding="utf-8"), f"--args {spec}"
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ArgumentError(f"{function}(): --args {spec}: cannot read {path}: {reason}") from None
    return spec, "--args"


def _sync_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """StateSync's keywords from --server, --user, --token and $WAYSTATION_PASSWORD, or None without --server."""
    from .device.errors import ArgumentError

    if args.server is None:
        if args.user is not None or args.token is not None:
            raise ArgumentError("--user and --token name an account on a server: give --server URL too")
        return None
    if not args.server.startswith(("http://", "https://")):
        raise ArgumentError(f"--server {args.server!r}: give the site's address, http://HOST:PORT or https://HOST")
    if args.user is None:
        raise ArgumentError("--server needs --user NAME: whose documents to sync")
    options: dict[str, Any] = {"server": args.server, "user": args.user, "timeout": args.sync_timeout}
    if args.token is not None:
        return {**options, "token": args.token}
    password = os.environ.get("WAYSTATION_PASSWORD")
    if password is None and sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"password of {args.user} on {args.server}: ")
    if not password:
        raise ArgumentError(f"--user {args.user}: no password: set WAYSTATION_PASSWORD, type it at the prompt, or give --token")
    return {**options, "password": password}


async def run_function(bundle: Path, function: str, call_args: Any, data: Path | None = None,
                       sync: dict[str, Any] | None = None) -> dict[str, Any]:
    """Open a bundle (building a source folder first) on the native host and call one function;
    with `sync` (StateSync's keywords), ctx.state is synced with that account before and after."""
    from .device.hosts.data_native import NativeDataBackend, default_data_dir
    from .device.hosts.state_native import NativeStateBackend
    from .device.runtime import App

    folder = _built_bundle(bundle)
    states = NativeStateBackend(data if data is not None else default_data_dir())  # ctx.state outlives the run
    syncing = None
    if sync is not None:
        from .device.hosts.state_sync import StateSync

        syncing = StateSync(states, say=_say, **sync)
    try:
        if syncing is not None:
            syncing.start()
        app = await App.open(folder, data=None if data is None else NativeDataBackend(data), states=states)
        try:
            reply = await app.call(function, call_args)
        finally:
            app.close()
        if syncing is not None:
            syncing.finish()  # what the call wrote is on the server's disk, or kept here for the next run
        return reply
    finally:
        if syncing is not None:
            syncing.close()
        states.close()


def _built_bundle(bundle: Path) -> Path:
    if (bundle / "manifest.json").is_file():
        return bundle
    from .bundles.builder import build_bundle
    from .bundles.pypi_assets import cache_dir

    # A private cache of the source being worked on: its version may stay put while it changes.
    return build_bundle(bundle, cache_dir() / "run", progress=lambda msg: print(msg, file=sys.stderr), force=True)


def _keys(args: argparse.Namespace) -> None:
    from .bundles.signing import generate_keys, load_private_key, trusted_key_entry

    private, public = generate_keys(args.out, args.name)
    print(json.dumps({"private": str(private), "public": str(public), **trusted_key_entry(load_private_key(private))}))


def _bundle_build(args: argparse.Namespace) -> None:
    from .bundles.builder import build_bundle

    folder = build_bundle(args.source, args.out, progress=_say, key=_signing_key(args.key),
                          chunk_store=args.out / "chunks", bar=_bar, force=args.force)
    print(folder)


def _signing_key(path: Path | None) -> Any:
    from .bundles.signing import dev_key, load_private_key

    return load_private_key(path) if path is not None else dev_key()


def _bundle_publish(args: argparse.Namespace) -> None:
    from .server.registry import Registry

    halt_if = _halt_rules(args.halt_if) if args.halt_if is not None else None
    trusted = [p.read_text() for p in args.trusted_key] if args.trusted_key else None
    registry = Registry(state_storage(args))
    manifest = registry.add_version(args.bundle, trusted_keys=trusted, bar=_bar)
    if args.static_dir is not None:
        # After the checks (signature, trusted keys, immutability), before devices are told of the release.
        from .server.static_export import export_chunks

        export = export_chunks(args.bundle, args.static_dir, bar=_bar, warn=_say)
        print(export.summary(args.static_dir / "chunks"))
    release = registry.release(manifest.name, manifest.version, args.channel, args.rollout, halt_if=halt_if)
    print(f"published {release}" + (f", halted if {halt_if}" if halt_if else ""))


def _halt_rules(text: str) -> str:
    """--halt-if, checked before anything is published: a typo must not leave a rollout unguarded."""
    from .server.halt_rules import parse_halt_rules

    text = text.strip()
    if text:
        try:
            parse_halt_rules(text)
        except ValueError as exc:
            raise ValueError(f"--halt-if {text!r}: {exc}") from None
    return text


def _bundle_diff(args: argparse.Namespace) -> None:
    from .bundles.diff import BundleDiff, load_manifest

    diff = BundleDiff.between(load_manifest(args.a), load_manifest(args.b))
    print(json.dumps(diff.to_dict(), indent=2) if args.json else diff.table())


def _bundle_check(args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(smoke_check_bundle(args.bundle))))


async def smoke_check_bundle(bundle: Path) -> dict[str, Any]:
    """Open a built bundle on the native host and run its smoke check (waystation.device.smoke)."""
    from .device.runtime import App
    from .device.smoke import smoke_check

    app = await App.open(bundle)
    try:
        return await smoke_check(app)
    finally:
        app.close()


def _new(args: argparse.Namespace) -> None:
    from .bundles.scaffold import new_bundle

    folder = new_bundle(args.name, args.dir)
    _say(f"created {folder}: build it with `waystation bundle build {folder}`, "
         f"try it with `waystation run {folder} score --args '{{\"rows\": [[1, 0, 0, 0]]}}'`")
    print(folder)


def _bundle_rollback(args: argparse.Namespace) -> None:
    from .server.registry import Registry

    withdrawn, current = Registry(state_storage(args)).rollback(args.bundle, args.channel)
    print(f"rolled back {withdrawn}; now {current}")


def _bundle_revoke(args: argparse.Namespace) -> None:
    from .server.registry import Registry

    Registry(state_storage(args)).revoke(args.name, args.version, args.reason)
    print(f"revoked {args.name} {args.version}" + (f" ({args.reason})" if args.reason else "")
          + ": no device is served it again, and devices holding it stop using it at their next check-in")


def _bundle_logging(args: argparse.Namespace) -> None:
    from .server.registry import Registry

    Registry(state_storage(args)).set_logging(args.name, args.channel, args.share, args.level)
    what = f"{args.share}% of devices send {args.level} lines and above" if args.share else "off"
    print(f"remote logging of {args.name} on {args.channel}: {what}")


def _bar(total: int, desc: str) -> Any:
    """A byte progress bar on stderr (shown on a terminal only)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                leave=False, disable=None)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
